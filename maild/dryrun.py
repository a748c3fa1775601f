"""`maild rules test FILE.eml`: the Plan for one message, stored and sent nowhere;
`maild rules test --ticket ID`: which time-based automations would fire on a ticket.

For a message, the automations are evaluated on the ticket it would open (as it
stands at arrival: nobody answers, nothing else changes), with the time each would
fire.

Uses the same `plan_message` as the ingest pipeline. When the database is
reachable and migrated, threading is looked up read-only (so "new ticket vs
reply" and the rate limit are real); otherwise the message is taken as a new
ticket and the output says so. The session is always rolled back.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from maild.actions import rate_limit_reason
from maild.app import App
from maild.automation import Plan, plan_message
from maild.errors import ConfigError, MaildError, NotFoundError
from maild.escalation.engine import explain
from maild.escalation.model import TicketFacts
from maild.escalation.runner import facts_dict, gather_facts, states_of
from maild.escalation.signals import detect
from maild.macros.text import strip_reply
from maild.parse import ParsedMessage, parse_message
from maild.routing import Route, route_message
from maild.store import repo
from maild.store.models import Customer, Mailbox, Ticket
from maild.threads import decide_thread
from maild.tickets import arrival_time


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read message: {exc.strerror}") from None


def _route_dict(route: Route) -> dict[str, Any]:
    """How ingest would store it: direction, counted or not, whose ticket."""
    failed = route.bounce.recipients if route.bounce else ()
    return {"direction": "out" if route.outbound else "in", "auto": route.automatic,
            "customer": route.counterpart, "opens": "filtered" if route.filtered else
            "nothing" if route.only_join else "ticket", "filtered_kind": route.filtered_kind,
            "forwarded_by": route.forwarded_by,
            "delivery_failed": [{"address": f.address, "status": f.status,
                                 "diagnostic": f.diagnostic} for f in failed]}


def dry_run(app: App, path: str) -> dict[str, Any]:
    raw = _read(path)
    parsed = parse_message(raw)
    auto = app.automation()
    now = app.clock.now()
    mailbox = app.config.mailboxes[0].address.lower()
    route = route_message(parsed, "inbox", app.routing(), raw)
    arrived = arrival_time(parsed, now, False, now)
    thread, is_new, previous, rate = "new (database not consulted)", True, 0, None
    try:
        app.require_schema()
        with app.sessions() as session:
            mb = session.query(Mailbox).filter_by(address=mailbox).one_or_none()
            if mb is not None:
                decision = decide_thread(  # as the writer threads it (maild.tickets)
                    parsed, counterpart=route.counterpart,
                    outbound=route.outbound or route.classification.sender == "agent",
                    lookup=repo.SqlThreadLookup(session, mb.id), arrived_at=arrived,
                    window=app.ingestor(app.config.mailboxes[0]).window,
                    thread_ids=route.thread_ids or None)
                is_new = decision.ticket_id is None
                thread = decision.reason + ("" if is_new else f" -> #{decision.ticket_id}")
            customer = session.query(Customer).filter_by(address=parsed.from_addr).one_or_none()
            if customer is not None:
                previous = repo.previous_ticket_count(session, customer.id, 2**62)
            rate = rate_limit_reason(session, auto, parsed.from_addr, now)
            session.rollback()
    except (MaildError, SQLAlchemyError):
        pass
    plan = plan_message(auto, parsed, mailbox=mailbox, is_new=is_new,
                        previous_tickets=previous, arrived_at=arrived, now=now,
                        classification=route.classification)
    out = {"file": path, "message_id": parsed.message_id, "from": parsed.from_addr,
           "subject": parsed.subject, "parse_error": parsed.parse_error, "thread": thread,
           **plan.as_dict(), "route": _route_dict(route)}
    if route.automatic:  # as ingest: machine mail and team notes run no rules at all
        out.update(matched_rules=[], actions=[], suggested_macros=[],
                   rules_skipped=f"{route.classification.sender} mail "
                                 f"({route.classification.reason}): no rules, no reply")
    elif plan.auto_reply and rate:
        out["auto_reply"].update(send=False, skip_reason=rate)
    out["automations"] = [] if route.automatic or not is_new else \
        explain(auto.timed, _new_ticket_facts(app, parsed, plan, arrived), arrived)
    return out


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
    return {"ticket": ticket_id, "now": now.isoformat(), "facts": facts_dict(facts),
            "automations": explain(app.automation().timed, facts, now, fired)}
