"""Drafts: a ready reply from the top suggested macro, in the mail client's Drafts.

Two halves, so that IMAP never runs inside a database transaction:

* `DraftHandler` (an ingest handler, inside the ingest transaction) only
  records intent as events: `draft_pending` {message_id, macro} for a new
  customer ticket that has a suggestion worth drafting, `draft_stale`
  {message_id} when an agent reply reaches a ticket that has a draft. The
  draft is the best-ranked suggestion (`draft_macro`), except that a macro
  marked `acknowledgement` (it restates the ETA reply: thanks, ticket number,
  when we answer) is never the draft once an ETA reply went to the ticket.
* `sync_drafts(app)` (after each cycle, outside any transaction) does the IMAP
  work: APPENDs each pending draft to the Drafts folder (SPECIAL-USE \\Drafts
  unless `drafts_folder` is configured) flagged \\Draft, threaded to the
  customer's message, marked `X-Maild-Draft: <ticket id>`, and records
  `draft_created` {uid, message_id}; it deletes the drafts of tickets that got
  an agent reply (or were solved / filtered) and records `draft_removed`.

It never deletes a message without its own marker header, never sends a
draft, and a draft never counts as an agent reply (it is not in Sent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from maild.app import App
from maild.clock import Clock
from maild.commands import is_command_mail
from maild.errors import MailboxError, MaildError
from maild.macros.loader import MacroLibrary
from maild.mailbox import MailboxClient
from maild.parse import ParsedMessage
from maild.replying import Agent, compose_reply, prepare_reply
from maild.store import repo
from maild.store.models import Event, Mailbox, OutboxRow, Ticket
from maild.tickets import StoredMessage

log = logging.getLogger("maild.drafts")

DRAFT_HEADER = "X-Maild-Draft"
DRAFT_KINDS = ("draft_pending", "draft_created", "draft_stale", "draft_removed",
               "draft_skipped")
FINAL_KINDS = ("draft_removed", "draft_skipped")
STALE_STATUSES = frozenset({"solved", "filtered"})

ClientFactory = Callable[[int], MailboxClient]


class DraftHandler:
    """Ingest handler: record draft intents; put it AFTER the automation handler
    (it reads the suggestions that handler stores on the ticket)."""

    name = "drafts"

    def __init__(self, clock: Clock, *, enabled: bool = True,
                 agents: Mapping[str, str] | None = None,
                 macros: MacroLibrary | None = None) -> None:
        self.clock = clock
        self.enabled = enabled
        self.agents = dict(agents or {})
        self.macros = macros  # None: every macro counts as content

    def handle(self, session: Session, stored: StoredMessage, parsed: ParsedMessage) -> None:
        state = inspect(stored.ticket)
        if not self.enabled or state.deleted or state.was_deleted:
            return
        if stored.agent_reply:
            self._stale(session, stored)
            return
        if stored.outbound or not stored.new_ticket or stored.row.auto \
                or is_command_mail(parsed, self.agents):
            return
        ticket = stored.ticket
        if ticket.status == "filtered" or not ticket.suggestions or _was_automated(session, ticket):
            return
        macro = draft_macro(ticket.suggestions, self.macros, ticket.language,
                            acknowledged=_eta_reply_queued(session, ticket))
        if macro is None:
            return
        repo.add_event(session, ticket.id, self.clock.now(), "draft_pending",
                       message_id=parsed.message_id, macro=macro)

    def _stale(self, session: Session, stored: StoredMessage) -> None:
        drafted = session.scalar(select(Event.id).where(
            Event.ticket_id == stored.ticket.id,
            Event.kind.in_(("draft_pending", "draft_created"))).limit(1))
        if drafted is not None:
            repo.add_event(session, stored.ticket.id, self.clock.now(), "draft_stale",
                           message_id=stored.row.message_id)


def draft_macro(suggestions: list[dict[str, Any]], macros: MacroLibrary | None,
                language: str | None, *, acknowledged: bool) -> str | None:
    """The macro to draft: the best-ranked suggestion, skipping acknowledgement macros
    when the customer already got an ETA reply; None if nothing is left."""
    for suggestion in suggestions:
        name = str(suggestion["name"])
        if acknowledged and macros is not None and name in macros.names() \
                and macros.get(name, language).acknowledgement:
            continue
        return name
    return None


def _eta_reply_queued(session: Session, ticket: Ticket) -> bool:
    return session.scalar(select(OutboxRow.id).where(
        OutboxRow.ticket_id == ticket.id, OutboxRow.kind == "auto_reply").limit(1)) is not None


def _was_automated(session: Session, ticket: Ticket) -> bool:
    return session.scalar(select(Event.id).where(
        Event.ticket_id == ticket.id, Event.kind == "auto_submitted").limit(1)) is not None


def drafts_handler(app: App, agents: Mapping[str, str] | None = None) -> DraftHandler:
    """The handler for `app` (enabled); the lead decides when to add it."""
    return DraftHandler(app.clock, agents=agents, macros=app.automation().macros)


@dataclass(frozen=True)
class DraftWork:
    ticket_id: int
    mailbox: str
    action: str  # create | remove | skip
    macro: str


@dataclass
class DraftReport:
    created: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def pending_drafts(session: Session) -> list[DraftWork]:
    """What `sync_drafts` has to do: tickets whose draft story is not finished."""
    finished = select(Event.ticket_id).where(Event.kind.in_(FINAL_KINDS))
    rows = session.execute(select(Event.ticket_id, Event.kind, Event.detail).where(
        Event.kind.in_(DRAFT_KINDS), Event.ticket_id.not_in(finished)).order_by(Event.id)).all()
    kinds: dict[int, set[str]] = {}
    macros: dict[int, str] = {}
    for tid, kind, detail in rows:
        kinds.setdefault(tid, set()).add(kind)
        if kind == "draft_pending":
            macros[tid] = str((detail or {}).get("macro", ""))
    work = []
    for ticket, address in session.execute(select(Ticket, Mailbox.address).join(
            Mailbox, Ticket.mailbox_id == Mailbox.id).where(Ticket.id.in_(kinds))).all():
        have = kinds[ticket.id]
        stale = ticket.agent_replies > 0 or "draft_stale" in have \
            or ticket.status in STALE_STATUSES
        if "draft_created" in have:
            action = "remove" if stale else ""
        else:
            action = "skip" if stale else "create"
        if action:
            work.append(DraftWork(ticket.id, address, action, macros.get(ticket.id, "")))
    return sorted(work, key=lambda w: w.ticket_id)


def sync_drafts(app: App, client_factory: ClientFactory | None = None) -> DraftReport:
    """Create pending drafts and remove stale ones; call it after each cycle.

    IMAP failures are logged and retried on the next call (nothing is lost).
    """
    report = DraftReport()
    with app.sessions() as session:
        work = pending_drafts(session)
    for w in (w for w in work if w.action == "skip"):
        _record(app, w.ticket_id, "draft_skipped", reason="agent already replied or solved")
        report.skipped.append(w.ticket_id)
    index = {mb.address.lower(): i for i, mb in enumerate(app.config.mailboxes)}
    factory = client_factory or (lambda i: MailboxClient(app.imap_settings(i)))
    for address in sorted({w.mailbox for w in work if w.action != "skip"}):
        if address not in index:
            report.errors.append(f"{address}: mailbox no longer configured")
            continue
        todo = [w for w in work if w.mailbox == address and w.action != "skip"]
        try:
            _sync_mailbox(app, factory(index[address]), index[address], todo, report)
        except MailboxError as exc:
            log.warning("drafts for %s not synced, will retry: %s", address, exc)
            report.errors.append(str(exc))
    return report


def _sync_mailbox(app: App, client: MailboxClient, index: int, todo: list[DraftWork],
                  report: DraftReport) -> None:
    with client:
        folder = app.config.mailboxes[index].drafts_folder or \
            client.find_special_folder("\\Drafts")
        if folder is None:
            raise MailboxError(f"{app.config.mailboxes[index].address}: no Drafts folder")
        client.select(folder)
        for w in todo:
            if w.action == "create":
                _create(app, client, folder, w, report)
            else:
                _remove(app, client, w, report)


def _create(app: App, client: MailboxClient, folder: str, w: DraftWork,
            report: DraftReport) -> None:
    found = client.search_header(DRAFT_HEADER, str(w.ticket_id))
    if found:  # appended before, but the record was lost: adopt it
        _record(app, w.ticket_id, "draft_created", uid=found[0], message_id=None)
        report.created.append(w.ticket_id)
        return
    now = app.clock.now()
    auto = app.automation()
    agent = Agent(app.environ.get("MAILD_AGENT_NAME") or auto.settings.sender_name)
    try:
        with app.sessions() as session:
            reply = prepare_reply(session, auto, w.ticket_id, w.macro, agent=agent, now=now)
    except MaildError as exc:
        _record(app, w.ticket_id, "draft_skipped", reason=str(exc)[:500])
        report.skipped.append(w.ticket_id)
        return
    out = compose_reply(reply, now, {DRAFT_HEADER: str(w.ticket_id)})
    uid = client.append(folder, out.raw, ["\\Draft"], now)
    _record(app, w.ticket_id, "draft_created", uid=uid, message_id=out.message_id,
            macro=reply.macro.name)
    report.created.append(w.ticket_id)
    log.info("ticket #%d: draft from macro %s placed in %s", w.ticket_id, w.macro, folder)


def _remove(app: App, client: MailboxClient, w: DraftWork, report: DraftReport) -> None:
    uids = client.search_header(DRAFT_HEADER, str(w.ticket_id))
    client.delete_uids(uids)
    _record(app, w.ticket_id, "draft_removed", uids=uids)
    report.removed.append(w.ticket_id)
    log.info("ticket #%d: stale draft removed (%d message(s))", w.ticket_id, len(uids))


def _record(app: App, ticket_id: int, kind: str, **detail: Any) -> None:
    with app.sessions.begin() as session:
        repo.add_event(session, ticket_id, app.clock.now(), kind, "maild", **detail)
