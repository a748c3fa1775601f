"""Drafts: a ready reply from the top suggested macro, in the mail client's Drafts.

Two halves, so that IMAP never runs inside a database transaction:

* `DraftHandler` (an ingest handler, inside the ingest transaction) only
  records intent as events: `draft_pending` {message_id, macro} for a new
  customer ticket that has a suggestion worth drafting, `draft_stale`
  {message_id} when an agent reply reaches a ticket that has a draft. The
  draft is the best-ranked suggestion (`draft_macro`), except that a macro
  marked `acknowledgement` (it restates the ETA reply: thanks, ticket number,
  when we answer) is never the draft once an ETA reply went to the ticket.
* `maild.drafts_sync.sync_drafts(app)` (after each cycle, outside any
  transaction) does the IMAP work that `pending_drafts` here lists: it places
  pending drafts in the Drafts folder and removes stale ones.

It never deletes a message without its own marker header, never sends a
draft, and a draft never counts as an agent reply (it is not in Sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from maild.clock import Clock
from maild.commands import is_command_mail
from maild.macros.loader import MacroLibrary
from maild.parse import ParsedMessage
from maild.store import repo
from maild.store.models import Event, Mailbox, OutboxRow, Ticket
from maild.tickets import StoredMessage

DRAFT_HEADER = "X-Maild-Draft"
DRAFT_KINDS = ("draft_pending", "draft_created", "draft_stale", "draft_removed",
               "draft_skipped")
FINAL_KINDS = ("draft_removed", "draft_skipped")
STALE_STATUSES = frozenset({"solved", "filtered"})



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
