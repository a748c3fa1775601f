"""Ingest's lookups for one fetched batch: one query per kind instead of one per message.

`BatchLookup.load` reads, for all of a batch's keys at once, what the database
held before the batch: which of its Message-IDs and references are stored (and
on which ticket), the customer rows of its correspondents, their tickets (into
the session, so `session.get` finds them) and the ids of all their tickets.
`TicketWriter` then asks it the questions it would otherwise ask SQL per message.

What the batch itself adds (message rows, tickets, customers) is registered
here as ORM objects and answered from their live state: an object whose
savepoint was rolled back (a quarantined message) or that a handler deleted is
neither pending nor persistent any more and so no longer counts, and a handler's change to a
ticket is seen as SQL would see it. Keys the batch did not announce fall back
to the per-message queries of `maild.store.repo`. Reads only; never flushes
or commits.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from maild.store import repo
from maild.store.models import Customer, MessageRow, Ticket

CHUNK = 500  # bound parameters per IN (...): far below every backend's limit


def _chunks(values: Iterable[str]) -> list[list[str]]:
    items = sorted(set(values))
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


def _live(obj: object) -> bool:
    """In the database as far as this transaction knows, or on its way there (added
    with its id, not flushed yet): not rolled back with a savepoint, not deleted."""
    state = inspect(obj)
    return bool(state.persistent or state.pending)


class BatchLookup:
    """`maild.threads.ThreadLookup` plus the writer's other questions, for one batch."""

    def __init__(self, session: Session, mailbox_id: int) -> None:
        self.session = session
        self.mailbox_id = mailbox_id
        self.sql = repo.SqlThreadLookup(session, mailbox_id)
        self._ids: set[str] = set()          # Message-IDs whose answer is known
        self._addresses: set[str] = set()    # customer addresses whose answer is known
        self._stored: dict[str, int] = {}    # before the batch: Message-ID -> ticket id
        self._rows: dict[str, MessageRow] = {}
        self._customers: dict[str, Customer] = {}
        self._tickets: dict[tuple[str, str], list[Ticket]] = defaultdict(list)
        self._ticket_ids: dict[int, list[int]] = {}  # before the batch, per customer id
        self._opened: dict[int, list[Ticket]] = defaultdict(list)
        self._held: list[Ticket] = []  # the identity map only holds weak references
        self._address_of: dict[int, str] = {}  # customer id -> address, for the above

    @classmethod
    def load(cls, session: Session, mailbox_id: int, message_ids: Iterable[str],
             addresses: Iterable[str], subjects: Iterable[str],
             since: datetime) -> BatchLookup:
        """Read the batch's keys: its Message-IDs and references, its correspondents, and
        their tickets on `subjects` active since `since` (the batch's earliest window)."""
        self = cls(session, mailbox_id)
        self._ids = set(message_ids)
        self._addresses = {a for a in addresses if a}
        self._load_messages()
        self._load_customers()
        self._load_recent(set(subjects), since)
        return self

    def _load_messages(self) -> None:
        for chunk in _chunks(self._ids):
            rows = self.session.execute(select(MessageRow.message_id, MessageRow.ticket_id).where(
                MessageRow.mailbox_id == self.mailbox_id, MessageRow.message_id.in_(chunk)))
            self._stored.update({mid: tid for mid, tid in rows})
        ids = sorted(set(self._stored.values()))
        for i in range(0, len(ids), CHUNK):  # held here, so session.get finds them
            self._held += self.session.scalars(select(Ticket).where(
                Ticket.id.in_(ids[i:i + CHUNK]))).all()

    def _load_customers(self) -> None:
        for chunk in _chunks(self._addresses):
            for customer in self.session.scalars(select(Customer).where(
                    Customer.address.in_(chunk))):
                self._customers[customer.address] = customer
                self._address_of[customer.id] = customer.address
        ids = sorted(self._address_of)
        self._ticket_ids = {cid: [] for cid in ids}
        for i in range(0, len(ids), CHUNK):
            for cid, tid in self.session.execute(select(Ticket.customer_id, Ticket.id).where(
                    Ticket.customer_id.in_(ids[i:i + CHUNK])).order_by(Ticket.id)):
                self._ticket_ids[cid].append(tid)

    def _load_recent(self, subjects: set[str], since: datetime) -> None:
        ids = sorted(self._address_of)
        for i in range(0, len(ids), CHUNK):
            for ticket in self.session.scalars(select(Ticket).where(
                    Ticket.mailbox_id == self.mailbox_id,
                    Ticket.customer_id.in_(ids[i:i + CHUNK]),
                    Ticket.normalized_subject.in_(sorted(subjects)),
                    func.coalesce(Ticket.last_customer_at, Ticket.created_at) >= since)):
                self._tickets[(self._address_of[ticket.customer_id],
                               ticket.normalized_subject)].append(ticket)

    # -- what the batch adds -------------------------------------------------------------

    def stored(self, row: MessageRow, ticket: Ticket, *, opened: bool, new_customer: bool
               ) -> None:
        """`row` was added to `ticket`, which the batch may have just `opened`
        (for a customer it may have just created): a recent-ticket candidate now."""
        self._rows[row.message_id] = row
        if opened:
            customer = ticket.customer
            self._customers[customer.address] = customer
            self._address_of[customer.id] = customer.address
            if new_customer:  # it had no tickets before the batch
                self._ticket_ids[customer.id] = []
            self._opened[customer.id].append(ticket)
        address = self._address_of.get(ticket.customer_id)
        if address is not None:
            candidates = self._tickets[(address, ticket.normalized_subject)]
            if ticket not in candidates:
                candidates.append(ticket)

    # -- the questions ---------------------------------------------------------------------

    def message_exists(self, message_id: str) -> bool:
        if message_id not in self._ids:
            return repo.message_exists(self.session, self.mailbox_id, message_id)
        row = self._rows.get(message_id)
        return message_id in self._stored or (row is not None and _live(row))

    def ticket_for_message_ids(self, message_ids: tuple[str, ...]) -> int | None:
        if not self._ids.issuperset(message_ids):
            return self.sql.ticket_for_message_ids(message_ids)
        for mid in message_ids:  # the caller's order: In-Reply-To first
            row = self._rows.get(mid)
            if row is not None and _live(row):
                return row.ticket_id
            if mid in self._stored:
                return self._stored[mid]
        return None

    def ticket_participants(self, ticket_id: int) -> set[str] | None:
        return self.sql.ticket_participants(ticket_id)

    def recent_ticket(self, customer: str, normalized_subject: str,
                      since: datetime) -> int | None:
        if customer not in self._addresses:
            return self.sql.recent_ticket(customer, normalized_subject, since)
        found = [t.id for t in self._tickets.get((customer, normalized_subject), ())
                 if _live(t) and (t.last_customer_at or t.created_at) >= since]
        return max(found, default=None)

    def customer(self, address: str) -> Customer | None:
        """The customer row for `address` if the batch knows it exists; None: ask SQL."""
        found = self._customers.get(address)
        return found if found is not None and _live(found) else None

    def knows_absent(self, address: str) -> bool:
        """`address` was announced, had no customer row before the batch and has none
        from the batch either: a new customer, no need to ask SQL."""
        return address in self._addresses and self.customer(address) is None

    def previous_ticket_count(self, customer_id: int, before_ticket: int) -> int | None:
        """Tickets of the customer older than `before_ticket`; None when not known here."""
        before = self._ticket_ids.get(customer_id)
        if before is None:
            return None
        opened = [t for t in self._opened.get(customer_id, ()) if _live(t)]
        return bisect_left(before, before_ticket) + sum(t.id < before_ticket for t in opened)
