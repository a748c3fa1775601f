"""Run the time-based automations over the backlog (a scheduler job, every
`[escalation] every_minutes`): gather each open ticket's facts, fire what holds and
has not fired in its current episode, close the episodes whose conditions stopped
holding (and those of tickets that left the backlog), all in the caller's
transaction. Firing: raise priority, assign, tag, suggest a macro, queue the notice
mail to `escalate_to`, and record an `escalated` event naming the automation and why.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, or_, select, update
from sqlalchemy.orm import Session

from maild.alerts import NOTIFICATION_HEADERS
from maild.compose import compose
from maild.escalation.model import PRIORITY_ORDER, Difficult, TicketFacts, TimedAutomation
from maild.escalation.signals import detect
from maild.macros.text import strip_reply
from maild.outbox import enqueue
from maild.store.bulk import BulkRows
from maild.store.models import Customer, EscalationState, Mailbox, MessageRow, Ticket

BACKLOG = ("new", "open", "pending")
log = logging.getLogger("maild.escalation")


@dataclass(frozen=True)
class NoticeSettings:
    sender: str
    sender_name: str


def _last_agent_reply(session: Session, ids: list[int]) -> dict[int, datetime]:
    return {tid: at for tid, at in session.execute(
        select(MessageRow.ticket_id, func.max(MessageRow.arrived_at)).where(
            MessageRow.ticket_id.in_(ids), MessageRow.direction == "out",
            MessageRow.auto.is_(False)).group_by(MessageRow.ticket_id))}


def _contacts(session: Session, customers: set[int], now: datetime) -> dict[int, int]:
    return {cid: n for cid, n in session.execute(
        select(Ticket.customer_id, func.count(MessageRow.id)).join(
            MessageRow, MessageRow.ticket_id == Ticket.id).where(
            Ticket.customer_id.in_(customers), MessageRow.direction == "in",
            MessageRow.auto.is_(False), MessageRow.arrived_at >= now - timedelta(days=1))
        .group_by(Ticket.customer_id))}


def uses_signals(automations: Sequence[TimedAutomation]) -> bool:
    return any(isinstance(c, Difficult) for a in automations for c in a.conditions)


def gather_facts(session: Session, tickets: Sequence[Ticket], now: datetime,
                 signals: bool = True) -> dict[int, TicketFacts]:
    """The facts of `tickets`: a few queries for all of them; without `signals` the
    customers' text is not read (no automation looks at it)."""
    ids = [t.id for t in tickets]
    if not ids:
        return {}
    replied = _last_agent_reply(session, ids)
    texts: dict[int, list[str]] = defaultdict(list)
    unanswered: dict[int, int] = defaultdict(int)
    text_column = MessageRow.text if signals else literal("")
    for tid, at, text in session.execute(select(
            MessageRow.ticket_id, MessageRow.arrived_at, text_column).where(
            MessageRow.ticket_id.in_(ids), MessageRow.direction == "in",
            MessageRow.auto.is_(False))):
        if tid not in replied or at > replied[tid]:
            unanswered[tid] += 1
            texts[tid].append(text or "")
    contacts = _contacts(session, {t.customer_id for t in tickets}, now) if signals else {}
    out = {}
    for t in tickets:
        own = [strip_reply(x, t.language) for x in texts[t.id]] if signals else []
        out[t.id] = TicketFacts(
            t.id, t.status, t.priority, frozenset(t.tags or ()), t.created_at, t.updated_at,
            t.last_customer_at, t.sla_warn_at, t.sla_due_at, t.first_response_at is not None,
            unanswered[t.id], detect(own, t.language, contacts.get(t.customer_id, 0)))
    return out


def run_automations(session: Session, automations: Sequence[TimedAutomation],
                    settings: NoticeSettings, now: datetime, limit: int = 5000,
                    history_age: timedelta | None = None) -> dict[str, int]:
    """Fire what holds on the backlog; counts of fired and cleared episodes. With
    `history_age` (`autoreply.max_age_hours`), tickets whose customer last wrote before
    maild first saw their mailbox less that age (history, `history_cutoffs`) are left
    out: a first run's import must not raise, tag and mail about years of old tickets."""
    if not automations:
        return {}
    cleared = _clear_left_backlog(session, now)
    query = select(Ticket).where(Ticket.status.in_(BACKLOG))
    if history_age is not None:
        query = query.where(*_live_only(history_cutoffs(session, history_age)))
    tickets = list(session.scalars(query.order_by(Ticket.id).limit(limit)))
    facts = gather_facts(session, tickets, now, uses_signals(automations))
    states = {(s.ticket_id, s.name): s for s in session.scalars(select(EscalationState).where(
        EscalationState.ticket_id.in_(list(facts))))} if facts else {}
    fired = 0
    events = BulkRows()  # nothing reads them back here: one INSERT for all of them
    for t in tickets:
        for auto in automations:
            state = states.get((t.id, auto.name))
            holds = auto.holds(facts[t.id], now)
            if holds and (state is None or state.cleared_at is not None):
                _fire(session, events, t, auto, facts[t.id], settings, now, state)
                fired += 1
            elif not holds and state is not None and state.cleared_at is None:
                state.cleared_at = now
                cleared += 1
    events.write(session)
    return {"escalated": fired, "episodes_ended": cleared}


def history_cutoffs(session: Session, history_age: timedelta) -> dict[int, datetime]:
    """Mailbox id -> where its history ends: when maild first saw the mailbox, less
    `history_age` (the history lane's split: older mail was imported as history)."""
    return {mid: created - history_age for mid, created in
            session.execute(select(Mailbox.id, Mailbox.created_at))}


def _live_only(cutoffs: dict[int, datetime]) -> list[ColumnElement[bool]]:
    """Tickets whose customer last wrote (or that opened, with no customer message) on or
    after their mailbox's history cutoff."""
    if not cutoffs:
        return []
    last = func.coalesce(Ticket.last_customer_at, Ticket.created_at)
    return [or_(*(and_(Ticket.mailbox_id == mid, last >= at) for mid, at in cutoffs.items()))]


def _clear_left_backlog(session: Session, now: datetime) -> int:
    left = select(Ticket.id).where(Ticket.status.not_in(BACKLOG)).scalar_subquery()
    result = session.execute(update(EscalationState).where(
        EscalationState.cleared_at.is_(None), EscalationState.ticket_id.in_(left))
        .values(cleared_at=now).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def _fire(session: Session, events: BulkRows, t: Ticket, auto: TimedAutomation,
          facts: TicketFacts, settings: NoticeSettings, now: datetime,
          state: EscalationState | None) -> None:
    done = _apply(events, t, auto, now)
    reasons = [c.name for c in auto.conditions]
    events.event(t.id, now, "escalated", automation=auto.name, conditions=reasons,
                 signals=facts.signals.describe(), done=done,
                 notified=list(auto.actions.escalate_to))
    if auto.actions.escalate_to:
        _notify(session, t, auto, facts, settings, now)
    if state is None:
        session.add(EscalationState(ticket_id=t.id, name=auto.name, fired_at=now, times=1))
    else:
        state.fired_at, state.cleared_at, state.times = now, None, state.times + 1
    log.info("ticket #%d: automation %s fired (%s)", t.id, auto.name, "; ".join(done) or "-")


def _apply(events: BulkRows, t: Ticket, auto: TimedAutomation, now: datetime) -> list[str]:
    a, done = auto.actions, []
    actor = f"automation:{auto.name}"
    if a.priority is not None:
        rank = PRIORITY_ORDER.index(t.priority) if t.priority in PRIORITY_ORDER else 1
        want = min(rank + 1, len(PRIORITY_ORDER) - 1) if a.priority == "raise" \
            else PRIORITY_ORDER.index(a.priority)
        if want > rank:
            events.event(t.id, now, "priority", actor=actor,
                         **{"from": t.priority, "to": PRIORITY_ORDER[want]})
            t.priority = PRIORITY_ORDER[want]
            done.append(f"priority {t.priority}")
    if a.assign is not None and t.assignee != a.assign:
        events.event(t.id, now, "assigned", actor=actor,
                     **{"from": t.assignee, "to": a.assign})
        t.assignee = a.assign
        done.append(f"assigned {a.assign}")
    added = [tag for tag in a.tags if tag not in (t.tags or [])]
    if added:
        t.tags = [*(t.tags or []), *added]
        events.event(t.id, now, "tags", actor=actor, added=added)
        done += [f"tag {tag}" for tag in added]
    current = [s.get("name") for s in t.suggestions or []]
    if a.suggest and current[:len(a.suggest)] != list(a.suggest):  # first, where drafts look
        t.suggestions = [*({"name": m, "score": None, "source": actor, "matched_terms": []}
                           for m in a.suggest),
                         *(s for s in t.suggestions or [] if s.get("name") not in a.suggest)]
        done += [f"suggest {m}" for m in a.suggest]
    t.updated_at = max(t.updated_at, now)
    return done


def _notify(session: Session, t: Ticket, auto: TimedAutomation, facts: TicketFacts,
            settings: NoticeSettings, now: datetime) -> None:
    customer = session.get_one(Customer, t.customer_id)
    lines = [f"Ticket #{t.id} was escalated by the automation {auto.name!r}"
             + (f" ({auto.description})" if auto.description else "") + ".", "",
             f"Subject:  {t.subject}", f"Customer: {customer.address}",
             f"Status:   {t.status}, priority {t.priority}",
             f"Opened:   {t.created_at:%Y-%m-%d %H:%M} UTC; customer messages without a "
             f"reply: {facts.unanswered}",
             f"Why:      {', '.join(c.name for c in auto.conditions)}"]
    lines += [f"Signal:   {s}" for s in facts.signals.describe()]
    if auto.actions.suggest:
        lines += ["", f"Suggested reply: maild reply {t.id} --macro {auto.actions.suggest[0]}"]
    body = "\n".join(lines) + "\n"
    for to in auto.actions.escalate_to:
        out = compose(sender=settings.sender, sender_name=settings.sender_name, to=to,
                      to_name="", subject=f"Escalated: #{t.id} {t.subject}"[:200], body=body,
                      date=now, ticket_id=None, automatic=False,
                      extra_headers=NOTIFICATION_HEADERS)
        enqueue(session, out, mailbox_id=t.mailbox_id, ticket_id=None, kind="escalation",
                now=now)


def states_of(session: Session, ticket_id: int) -> dict[str, bool]:
    """automation name -> its current episode has fired (for the dry run)."""
    return {s.name: s.cleared_at is None for s in session.scalars(
        select(EscalationState).where(EscalationState.ticket_id == ticket_id))}


def facts_dict(f: TicketFacts) -> dict[str, Any]:
    return {"status": f.status, "priority": f.priority, "tags": sorted(f.tags),
            "unanswered": f.unanswered, "signals": f.signals.describe()}
