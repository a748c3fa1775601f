"""`maild rules test FILE.eml`: what ingest would do with one message, stored nowhere;
`maild rules test --ticket ID`: which time-based automations would fire on a ticket.

There is no second decision path here: the message goes through the mailbox's
own ingest pipeline (`App.ingestor`, `Ingestor.rehearse`: routing, threading
with the reopen window, command mail, rules, the ETA reply and its rate limits
by Reply-To, drafts), the outcome is read inside the transaction, and the
transaction is rolled back. Ingest never sends (it queues), so rolling back is
"storage and sending off". When the configured database is not reachable or
not migrated, a scratch SQLite database stands in and the output says so.
On PostgreSQL a rehearsed new ticket uses up a ticket number (a sequence does
not roll back), as any rolled-back insert does.

For a message that would open a ticket, the time-based automations are evaluated
on that ticket as it stands at arrival (nobody answers, nothing else changes),
with the time each would fire.

This module must not commit, send, or touch IMAP.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from maild.app import App
from maild.automation import Plan
from maild.config import MailboxConfig
from maild.errors import ConfigError, MaildError, NotFoundError
from maild.escalation.engine import explain
from maild.escalation.model import TicketFacts
from maild.escalation.runner import facts_dict, gather_facts, history_cutoffs, states_of
from maild.escalation.signals import detect
from maild.ingest import IngestItem
from maild.loopguard import verdict_of
from maild.macros.text import strip_reply
from maild.parse import ParsedMessage, parse_message
from maild.routing import Route, route_message
from maild.store.db import make_engine, make_sessionmaker, upgrade
from maild.store.models import Event, OutboxRow, Ticket
from maild.tickets import StoredMessage, arrival_time


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read message: {exc.strerror}") from None


def _route_dict(route: Route) -> dict[str, Any]:
    """How ingest stores it: direction, counted or not, whose ticket."""
    failed = route.bounce.recipients if route.bounce else ()
    return {"direction": "out" if route.outbound else "in", "auto": route.automatic,
            "customer": route.counterpart, "opens": "filtered" if route.filtered else
            "nothing" if route.only_join else "ticket", "filtered_kind": route.filtered_kind,
            "forwarded_by": route.forwarded_by,
            "delivery_failed": [{"address": f.address, "status": f.status,
                                 "diagnostic": f.diagnostic} for f in failed]}


def mailbox_for(app: App, parsed: ParsedMessage) -> MailboxConfig:
    """The configured mailbox the message was sent to (To, Cc), else the first."""
    named = {a.addr.lower() for a in (*parsed.to, *parsed.cc)}
    for mb in app.config.mailboxes:
        if mb.address.lower() in named:
            return mb
    return app.config.mailboxes[0]


@contextmanager
def _quiet() -> Iterator[None]:
    """Ingest logs what it stores; a rehearsal stores nothing, so it says nothing."""
    logger = logging.getLogger("maild")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _database(app: App) -> Iterator[tuple[App, str]]:
    """`app` if its database is migrated, else the same App on a scratch SQLite."""
    try:
        app.require_schema()
        why = ""
    except (MaildError, SQLAlchemyError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not why:
        yield app, "configured"
        return
    with tempfile.TemporaryDirectory(prefix="maild-dryrun-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        try:
            upgrade(engine)
            yield dataclasses.replace(app, engine=engine, sessions=make_sessionmaker(engine)), \
                f"scratch (not consulted: {why})"
        finally:
            engine.dispose()


def _outcome(session: Session, stored: StoredMessage | None, marks: tuple[int, int, int]
             ) -> dict[str, Any]:
    """What ingest did, read inside its (rolled-back) transaction."""
    if stored is None:
        return {"stored": False}
    tickets, events, outbox = marks
    row = stored.row
    ticket = session.get_one(Ticket, row.ticket_id)
    new = session.scalars(select(Event).where(Event.id > events).order_by(Event.id)).all()
    queued = session.scalars(select(OutboxRow).where(OutboxRow.id > outbox)
                             .order_by(OutboxRow.id)).all()
    suppressed = [e.detail.get("reason") for e in new if e.kind == "auto_reply_suppressed"]
    return {"stored": True, "ticket": "new" if ticket.id > tickets else f"#{ticket.id}",
            "status": ticket.status, "auto": row.auto, "reopens": stored.reopened,
            "thread": stored.thread_reason, "events": sorted(e.kind for e in new),
            "outbox": sorted(({"kind": o.kind, "to": o.recipient} for o in queued),
                             key=lambda o: (o["kind"], o["to"])),
            "suppressed": suppressed[0] if suppressed else None,
            "command": any(e.kind in ("command", "command_rejected") for e in new)}


def _marks(app: App) -> tuple[int, int, int]:
    with app.sessions() as s:
        return (s.scalar(select(func.max(Ticket.id))) or 0,
                s.scalar(select(func.max(Event.id))) or 0,
                s.scalar(select(func.max(OutboxRow.id))) or 0)


def _plan_part(plans: list[tuple[Plan, str | None]], out: dict[str, Any],
               ing: dict[str, Any]) -> dict[str, Any]:
    """The Plan the automation handler made, with whether its reply was queued."""
    if not plans:
        why = "duplicate: already stored" if not ing["stored"] else \
            "command mail: commands run, no rules, no reply" if ing["command"] else \
            f"{out['classification']['sender']} mail ({out['classification']['reason']}): " \
            "no rules, no reply"
        return {"language": None, "matched_rules": [], "actions": [], "sla": None,
                "suggested_macros": [], "rules_skipped": why,
                "auto_reply": {"send": False, "skip_reason": ing.get("suppressed") or why,
                               "template": None, "to": None, "eta": None}}
    plan, reason = plans[0]
    part = plan.as_dict()
    del part["auto_submitted"], part["classification"]
    queued = any(o["kind"] == "auto_reply" for o in ing["outbox"])
    part["auto_reply"].update(send=queued, skip_reason=None if queued else reason)
    return part


def rehearse(app: App, raw: bytes, *, role: str = "inbox",
             internaldate: datetime | None = None) -> dict[str, Any]:
    """Everything `maild rules test` reports about `raw` (folder role inbox|sent)."""
    parsed = parse_message(raw)
    mailbox = mailbox_for(app, parsed)
    plans: list[tuple[Plan, str | None]] = []
    with _database(app) as (db_app, database), _quiet():
        ingestor = db_app.ingestor(mailbox, observe=lambda p, r: plans.append((p, r)))
        marks = _marks(db_app)
        item = IngestItem(None, raw, internaldate or app.clock.now())
        ing, stored_route = ingestor.rehearse(
            role, item, lambda s, st: (_outcome(s, st, marks), st.route if st else None))
        # as ingest routed it; a duplicate was not routed, so route it the same way here
        route = stored_route or route_message(parsed, role, ingestor.routing, raw)
    verdict = verdict_of(route.classification)
    out: dict[str, Any] = {
        "message_id": parsed.message_id, "from": parsed.from_addr, "subject": parsed.subject,
        "parse_error": parsed.parse_error, "mailbox": mailbox.address, "database": database,
        "thread": _thread(ing),
        "auto_submitted": {"automated": verdict.automated, "reason": verdict.reason,
                           "description": verdict.description},
        "classification": {"sender": route.classification.sender,
                           "kind": route.classification.kind,
                           "reason": route.classification.reason,
                           "description": route.classification.description},
        "route": _route_dict(route), "ingest": ing}
    out.update(_plan_part(plans, out, ing))
    now = app.clock.now()
    arrived = arrival_time(parsed, now, False, now)
    out["automations"] = [] if route.automatic or not plans or ing.get("ticket") != "new" else \
        explain(app.automation().timed, _new_ticket_facts(app, parsed, plans[0][0], arrived),
                arrived)
    return out


def _thread(ing: dict[str, Any]) -> str:
    if not ing["stored"]:
        return "duplicate: this mailbox already has its Message-ID (or it is maild's own)"
    return ing["thread"] + ("" if ing["ticket"] == "new" else f" -> {ing['ticket']}")


def dry_run(app: App, path: str) -> dict[str, Any]:
    return {"file": path, **rehearse(app, _read(path))}


def _new_ticket_facts(app: App, parsed: ParsedMessage, plan: Plan,
                      arrived: datetime) -> TicketFacts:
    """The ticket `parsed` would open, at its arrival, as the automations see it."""
    auto = app.automation()
    policy = auto.policies.get(plan.sla_policy) or auto.policies["default"]
    warn = auto.calendar.add(arrived, policy.first_response * auto.warn_fraction)
    text = strip_reply(parsed.text, plan.language)
    return TicketFacts(0, "new", plan.decision.priority, frozenset(plan.decision.tags), arrived,
                       arrived, arrived, warn, plan.sla_due_at, False, 1,
                       detect([text], plan.language, 1))


def dry_run_ticket(app: App, ticket_id: int) -> dict[str, Any]:
    """The time-based automations on ticket `ticket_id` now: which hold, when each
    would fire, which already fired in their current episode. Reads only."""
    app.require_schema()
    now = app.clock.now()
    with app.sessions() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            raise NotFoundError(f"no ticket #{ticket_id}")
        facts = gather_facts(session, [ticket], now)[ticket_id]
        fired = states_of(session, ticket_id)
        age = timedelta(hours=app.config.autoreply.max_age_hours)
        cutoff = history_cutoffs(session, age).get(ticket.mailbox_id)
        last = ticket.last_customer_at or ticket.created_at
    entries = explain(app.automation().timed, facts, now, fired)
    history = cutoff is not None and last < cutoff
    if history:  # as the scheduler's run: history is left alone (run_automations)
        for entry in entries:
            entry["fires_at"] = None
    return {"ticket": ticket_id, "now": now.isoformat(), "facts": facts_dict(facts),
            "history": history, "automations": entries}
