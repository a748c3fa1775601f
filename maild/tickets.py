"""Record one parsed message on its ticket and keep the ticket's state true.

How a message is stored follows its route (`maild.routing`): outbound mail
that is not automatic is an agent reply, which counts for first_response_at and
agent_replies; a customer's mail on a solved or pending ticket reopens it;
machine mail is stored `auto` and changes nothing on a customer's ticket (a
bounce of our mail records `delivery_failed`), and opens only `filtered` ones.
Arrival time follows DESIGN.md "Metric definitions". Works inside the caller's
transaction; never commits, and logs only through `log_after_commit` (the
caller says where a message ended with `log_stored`). Ingest announces each
batch (`prepare`), so the lookups take one query per kind for the whole batch
(`maild.store.batch`); without that, each message asks SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from maild.bounces import BounceDetails
from maild.calendar import BusinessCalendar
from maild.classify import Classification, ClassifyContext
from maild.parse import ParsedMessage
from maild.routing import Route, RouteContext, route_message
from maild.sla import answered, reopened, set_status
from maild.store import repo
from maild.store.after_commit import log_after_commit
from maild.store.batch import BatchLookup
from maild.store.bulk import BulkRows
from maild.store.ids import IdAllocator
from maild.store.models import Customer, MessageRow, MessageSource, Ticket
from maild.threads import ThreadDecision, decide_thread, normalize_subject, original_subject
from maild.undeliverable import record_bounce

ABSURD_DATE = timedelta(hours=24)
BOUNCE_MATCH = timedelta(days=30)  # how far back a bounce's failed recipient is matched
log = logging.getLogger("maild.tickets")


@dataclass(frozen=True)
class StoredMessage:
    ticket: Ticket
    row: MessageRow
    new_ticket: bool
    thread_reason: str
    outbound: bool
    agent_reply: bool
    role: str = "inbox"
    previous_tickets: int | None = None  # the customer's older tickets; None: not counted
    route: Route | None = None  # how it was stored: its classification, a bounce's details
    reopened: bool = False  # a customer's message that reopened a solved ticket


@dataclass(frozen=True)
class Incoming:
    """One message of a batch as `TicketWriter.prepare` needs it."""

    parsed: ParsedMessage
    role: str
    internaldate: datetime | None
    raw: bytes = b""


def arrival_time(parsed: ParsedMessage, internaldate: datetime | None, outbound: bool,
                 now: datetime) -> datetime:
    """Server receive time for customer mail; Date for agent replies unless absurd (and,
    once the ticket is known, never before the customer message it answers:
    `TicketWriter._reply_time`)."""
    date = parsed.date
    if outbound and date and (internaldate is None or abs(date - internaldate) <= ABSURD_DATE):
        return date
    return internaldate or parsed.date or now


def responder_name(name: str, address: str) -> str:
    """How KPIs name an agent: the display name of the reply's From, else its address."""
    return name.strip() or address or "(unknown)"


def log_stored(session: Session, stored: StoredMessage) -> None:
    """Log where a message was stored, once that is committed: call it when nothing will
    move the message any more (after the ingest handlers: command mail is moved to the
    ticket its subject names, and the ticket it opened is removed)."""
    ticket_id = stored.row.ticket.id
    moved = ticket_id != stored.ticket.id
    cls = stored.route.classification if stored.route is not None else None
    log_after_commit(session, log, logging.INFO, "ticket #%d %s: %s %s message %s (%s; %s)",
                     ticket_id, "opened" if stored.new_ticket and not moved else "joined",
                     "outbound" if stored.outbound else "inbound",
                     (cls.kind or cls.sender) if cls else "", stored.row.message_id,
                     "moved: command mail" if moved else stored.thread_reason,
                     cls.reason if cls else "")


class TicketWriter:
    def __init__(self, session: Session, mailbox_id: int, own: frozenset[str],
                 window: timedelta, calendar: BusinessCalendar | None = None,
                 reopen_window: timedelta | None = None,
                 routing: RouteContext | None = None) -> None:
        self.calendar = calendar
        self.reopen_window = reopen_window
        self.session = session
        self.mailbox_id = mailbox_id
        self.own = own
        self.window = window
        self.routing = routing or RouteContext(own, ClassifyContext(own_addresses=own))
        self.lookup: repo.SqlThreadLookup | BatchLookup = repo.SqlThreadLookup(session,
                                                                                mailbox_id)
        self.batch: BatchLookup | None = None
        self.ids = IdAllocator(session)
        self._opened: dict[int, Ticket] = {}  # tickets opened here, maybe not flushed yet
        self._routes: dict[str, Route] = {}  # routed in `prepare`, by Message-ID
        # history batches: sources and the per-message events as plain rows, inserted
        # after the batch's flush (`maild.store.bulk`); None: ORM rows, as live mail needs
        self.bulk: BulkRows | None = None

    def prepare(self, batch: Sequence[Incoming], now: datetime) -> None:
        """Look up everything `batch` will ask about, one query per kind."""
        ids: set[str] = set()
        addresses: set[str] = set()
        subjects: set[str] = set()
        since = now - self.window
        for item in batch:
            route = self._route(item.parsed, item.role, item.raw, None)
            ids.update((item.parsed.message_id, *item.parsed.thread_ids, *route.thread_ids))
            addresses.add(route.counterpart)
            subjects.add(normalize_subject(item.parsed.subject))
            arrived = arrival_time(item.parsed, item.internaldate, route.outbound, now)
            since = min(since, arrived - self.window)
        self.batch = self.lookup = BatchLookup.load(self.session, self.mailbox_id, ids,
                                                    addresses, subjects, since)

    def routed(self, role: str, parsed: Sequence[ParsedMessage | Exception],
               routes: Sequence[Route | None]) -> None:
        """Take the routes the parse workers worked out for `parsed` (the same pure
        `route_message`, run there): `prepare` and `add` then route none of them again."""
        for msg, route in zip(parsed, routes, strict=False):
            if route is not None and not isinstance(msg, Exception):
                self._routes[f"{role}:{msg.message_id}"] = route

    def _route(self, parsed: ParsedMessage, role: str, raw: bytes, auto: bool | None) -> Route:
        key = f"{role}:{parsed.message_id}"
        route = self._routes.get(key) if auto is None else None
        if route is None:
            route = route_message(parsed, role, self.routing, raw, auto)
            if auto is None:
                self._routes[key] = route
        return route

    def add(self, parsed: ParsedMessage, raw: bytes, *, role: str, folder: str | None,
            uidvalidity: int | None, uid: int | None, internaldate: datetime | None,
            now: datetime, auto: bool | None = None) -> StoredMessage | None:
        """Store the message; None if this mailbox already has its Message-ID, or if it is
        maild's own mail that belongs to no ticket (a digest, an alert)."""
        if self._exists(parsed.message_id):
            return None
        route = self._trusted(self._route(parsed, role, raw, auto))
        if route.outbound and auto is None and repo.outbox_has(self.session, parsed.message_id):
            return None  # maild's own mail that belongs to no ticket (the digest) in Sent
        arrived = arrival_time(parsed, internaldate, route.outbound, now)
        decision = self._thread(parsed, route, arrived)
        if decision.ticket_id is None and route.only_join:
            log.info("skipped %s %s: it belongs to no ticket",
                     "a survey answer" if route.survey else "maild's own mail",
                     parsed.message_id)
            return None
        new = decision.ticket_id is None
        if decision.ticket_id is None:
            ticket, new_customer = self._open(parsed, route, arrived, now)
        else:
            ticket, new_customer = self._ticket(decision.ticket_id), False
        if route.outbound and not route.automatic:
            arrived = self._reply_time(ticket, parsed, arrived, internaldate, now)
        row = self._row(parsed, ticket, route, arrived, now, folder, uidvalidity, uid,
                        internaldate)
        if self.bulk is not None:
            self.bulk.source(row.id, raw)
        else:
            self.session.add(MessageSource(message_pk=row.id, raw=raw))
        if self.batch is not None:
            self.batch.stored(row, ticket, opened=new, new_customer=new_customer)
        self._events(parsed, ticket, route, decision, new, arrived, now)
        agent = route.outbound and not route.automatic
        reopen = False
        if agent:
            self._agent_reply(ticket, row, arrived)
        elif not route.outbound and not route.automatic and not new:
            reopen = self._customer_wrote(ticket, arrived)
        if route.bounce is not None and route.bounce.recipients and ticket.status != "filtered":
            # a bounce of our mail; one that matched no ticket of ours (backscatter of
            # spam forged with our address) stays on its filtered ticket, unrecorded
            record_bounce(self.session, ticket.id, route.bounce, parsed.message_id, arrived)
        ticket.updated_at = max(ticket.updated_at, now)
        return StoredMessage(ticket, row, new, decision.reason, route.outbound, agent, role,
                             self._previous_tickets(ticket), route, reopen)

    def _trusted(self, route: Route) -> Route:
        """A sender someone recovered from `filtered` writes as a customer from now on."""
        if not route.filtered or route.classification.sender != "machine":
            return route
        found = self.batch.customer(route.counterpart) if self.batch is not None else None
        if found is None and not (self.batch is not None and
                                  self.batch.knows_absent(route.counterpart)):
            found = repo.find_customer(self.session, route.counterpart)
        if found is None or not found.trusted:
            return route
        cls = Classification("customer", None, "recovered-sender",
                             f"recovered by hand ({route.classification.reason})")
        return Route(False, False, route.counterpart, cls, customer_name=route.customer_name)

    def _thread(self, parsed: ParsedMessage, route: Route, arrived: datetime) -> ThreadDecision:
        team = route.outbound or route.classification.sender == "agent"
        decision = decide_thread(parsed, counterpart=route.counterpart, outbound=team,
                                 lookup=self.lookup, arrived_at=arrived, window=self.window,
                                 thread_ids=route.thread_ids or None)
        if decision.ticket_id is None and route.bounce is not None:
            return self._bounced_recipient(route.bounce, arrived) or decision
        if decision.ticket_id is None or route.outbound or route.automatic:
            return decision
        ticket = self._ticket(decision.ticket_id)
        if ticket.status == "filtered":  # a person writes: a ticket of their own
            return ThreadDecision(None, f"new: #{ticket.id} is filtered")
        return self._past_reopen_window(decision, ticket, arrived)

    def _bounced_recipient(self, bounce: BounceDetails, arrived: datetime
                           ) -> ThreadDecision | None:
        """A bounce that returns no Message-ID we know: the ticket whose mail went to
        the failed address (the last 30 days)."""
        for failed in bounce.recipients:
            found = repo.ticket_for_failed_recipient(self.session, self.mailbox_id,
                                                     failed.address, arrived - BOUNCE_MATCH)
            if found is not None:
                return ThreadDecision(found, "failed-recipient")
        return None

    def _events(self, parsed: ParsedMessage, ticket: Ticket, route: Route,
                decision: ThreadDecision, new: bool, arrived: datetime, now: datetime) -> None:
        cls = route.classification
        add = self.bulk.event if self.bulk is not None else partial(repo.add_event, self.session)
        add(ticket.id, arrived, "opened" if new else "joined",
            message_id=parsed.message_id, reason=decision.reason,
            direction="out" if route.outbound else "in", sender=cls.sender,
            **({"mail_kind": cls.kind} if cls.kind else {}), marker=cls.reason)
        if new and ticket.status == "filtered":
            add(ticket.id, arrived, "filtered", mail_kind=ticket.filtered_kind,
                reason=ticket.filtered_reason)
        if route.forwarded_by:
            add(ticket.id, arrived, "forwarded", actor=route.forwarded_by,
                message_id=parsed.message_id, customer=route.counterpart)
        if parsed.parse_error:
            add(ticket.id, now, "parse_error", message_id=parsed.message_id,
                error=parsed.parse_error[:500])

    def _exists(self, message_id: str) -> bool:
        if self.batch is not None:
            return self.batch.message_exists(message_id)
        return repo.message_exists(self.session, self.mailbox_id, message_id)

    def _ticket(self, ticket_id: int) -> Ticket:
        """The ticket; one this writer opened is found without a query (which would
        flush the batch so far to find it)."""
        opened = self._opened.get(ticket_id)
        if opened is not None and inspect(opened).pending:
            return opened
        return self.session.get_one(Ticket, ticket_id)

    def _previous_tickets(self, ticket: Ticket) -> int | None:
        if self.batch is None:
            return None
        return self.batch.previous_ticket_count(ticket.customer_id, ticket.id)

    def _past_reopen_window(self, decision: ThreadDecision, ticket: Ticket,
                            arrived: datetime) -> ThreadDecision:
        """A customer writing long after a ticket was solved starts a new one."""
        if self.reopen_window is None or ticket.status != "solved" or ticket.solved_at is None:
            return decision
        if arrived - ticket.solved_at <= self.reopen_window:
            return decision
        days = self.reopen_window.days
        return ThreadDecision(None, f"new: #{ticket.id} was solved more than {days} days ago")

    def _open(self, parsed: ParsedMessage, route: Route, arrived: datetime,
              now: datetime) -> tuple[Ticket, bool]:
        """A new ticket (and whether its customer is new too), added to the session with
        its id: the rows are inserted at the next flush (a query's, or the commit's).
        Machine mail (and team-only mail) opens a `filtered` ticket: no SLA, no counts."""
        customer, new_customer = self._customer(route.counterpart or "unknown@invalid",
                                                route.customer_name, now)
        filtered = route.filtered
        status = "filtered" if filtered else "open" if route.outbound else "new"
        cls = route.classification
        waiting = not route.outbound and not route.automatic
        # an agent's forward: the customer's subject, not "Fwd: …" (replies tag [#ID])
        subject = original_subject(parsed.subject) if route.forwarded_by else parsed.subject
        ticket = Ticket(id=self.ids.next("tickets"), mailbox_id=self.mailbox_id,
                        customer=customer, customer_id=customer.id,
                        subject=subject, normalized_subject=normalize_subject(subject),
                        status=status,
                        priority="normal", tags=[], created_at=arrived, updated_at=now,
                        last_customer_at=arrived if waiting else None, agent_replies=0,
                        sla_breached=False, next_breached=False, suggestions=[],
                        filtered_kind=route.filtered_kind if filtered else None,
                        filtered_reason=f"{cls.reason}: {cls.description}"[:255]
                        if filtered else None)
        self.session.add(ticket)
        self._opened[ticket.id] = ticket
        return ticket, new_customer

    def _customer(self, address: str, name: str, now: datetime) -> tuple[Customer, bool]:
        """The customer row for `address` and whether it is new; a new one has its id.
        An address the batch announced and did not find is new without asking SQL."""
        found = self.batch.customer(address) if self.batch is not None else None
        if found is None and not (self.batch is not None and self.batch.knows_absent(address)):
            found = repo.find_customer(self.session, address)
        if found is None:
            found = Customer(id=self.ids.next("customers"), address=address, name=name,
                             created_at=now)
            self.session.add(found)
            return found, True
        if name and not found.name:
            found.name = name
        return found, False

    def _row(self, parsed: ParsedMessage, ticket: Ticket, route: Route,
             arrived: datetime, now: datetime, folder: str | None, uidvalidity: int | None,
             uid: int | None, internaldate: datetime | None) -> MessageRow:
        outbound, cls = route.outbound, route.classification
        row = MessageRow(
            id=self.ids.next("messages"), ticket=ticket, ticket_id=ticket.id,
            mailbox_id=self.mailbox_id, message_id=parsed.message_id,
            in_reply_to=" ".join(parsed.in_reply_to) or None,
            references=" ".join(parsed.references) or None,
            direction="out" if outbound else "in", auto=route.automatic,
            sender_class=cls.sender, machine_kind=cls.kind, class_reason=cls.reason[:64],
            from_addr=parsed.from_addr, from_name=parsed.from_name,
            to_addrs=[a.addr for a in parsed.to], cc_addrs=[a.addr for a in parsed.cc],
            subject=parsed.subject, date=parsed.date, received_at=internaldate,
            arrived_at=arrived, text=parsed.text, html=parsed.html, raw_size=parsed.raw_size,
            attachments=[asdict(a) for a in parsed.attachments],
            parse_error=parsed.parse_error, folder=folder, uidvalidity=uidvalidity, uid=uid,
            created_at=now)
        self.session.add(row)  # no flush: it has its id, and the batch's rows go together
        return row

    def _reply_time(self, ticket: Ticket, parsed: ParsedMessage, arrived: datetime,
                    internaldate: datetime | None, now: datetime) -> datetime:
        """An agent reply is never before the customer message it answers (the one its
        In-Reply-To/References name, else the ticket's first): a Date earlier than that
        gives way to the arrival in Sent. Judged against the message answered, not the
        ticket's latest: importing history stores INBOX before Sent, so a customer's
        follow-up is often stored before the reply that preceded it."""
        waiting = ticket.last_customer_at
        if waiting is None or arrived >= waiting:
            return arrived  # the common case: no query
        answered_at = repo.answered_message_at(self.session, ticket.id, parsed.thread_ids)
        if answered_at is None or arrived >= answered_at:
            return arrived
        timed = max(internaldate or now, answered_at)
        log_after_commit(self.session, log, logging.INFO,
                         "ticket #%d: reply %s dated %s, before the customer's message of %s "
                         "it answers: timed %s (its arrival)", ticket.id, parsed.message_id,
                         arrived.isoformat(), answered_at.isoformat(), timed.isoformat())
        return timed

    def _agent_reply(self, ticket: Ticket, row: MessageRow, arrived: datetime) -> None:
        ticket.agent_replies += 1
        answered(ticket)
        repo.add_event(self.session, ticket.id, arrived, "agent_reply",
                       message_id=row.message_id, count=ticket.agent_replies)
        if ticket.first_response_at is None and ticket.last_customer_at is not None:
            ticket.first_response_at = arrived
            self._record_frt(ticket, row, arrived)
            repo.add_event(self.session, ticket.id, arrived, "first_response",
                           message_id=row.message_id)
        if ticket.status == "new":
            ticket.status = "open"

    def _record_frt(self, ticket: Ticket, row: MessageRow, answered: datetime) -> None:
        """Keep the first response's figures on the ticket (docs/metrics.md, FRT): timed
        from the ticket's first customer message, else its creation. Without a calendar
        they stay NULL and `stats` computes them."""
        ticket.first_responder = responder_name(row.from_name, row.from_addr)
        if self.calendar is None:
            return
        start = repo.first_customer_message_at(self.session, ticket.id) or ticket.created_at
        ticket.frt_wall_seconds = max(0.0, (answered - start).total_seconds())
        ticket.frt_business_seconds = self.calendar.business_seconds(start, answered)

    def _customer_wrote(self, ticket: Ticket, arrived: datetime) -> bool:
        """A customer's message on an existing ticket; True if it reopened a solved one."""
        if ticket.first_response_at is not None and arrived < ticket.first_response_at:
            # mail older than the recorded first response, stored after it: the FRT
            # start may move earlier; `stats` computes this ticket's figures instead
            ticket.frt_wall_seconds = ticket.frt_business_seconds = None
        ticket.last_customer_at = max(ticket.last_customer_at or arrived, arrived)
        if ticket.status not in ("solved", "pending"):
            return False
        reopen = ticket.status == "solved"
        kind = "reopened" if reopen else "customer_replied"
        if reopen:
            reopened(ticket)  # the solved ticket's targets end; the automation sets a new one
        repo.add_event(self.session, ticket.id, arrived, kind, previous=ticket.status)
        set_status(self.session, ticket, "open", arrived, calendar=self.calendar,
                   reason=kind)
        return reopen

