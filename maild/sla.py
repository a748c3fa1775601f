"""First-response SLA bookkeeping: due and warning times, status changes that
pause and resume the clock, the periodic check, and the pending auto-solve.

- A new ticket gets `sla_due_at` = arrival + the policy's target in business
  time, and `sla_warn_at` = arrival + `warn_fraction` of that target.
- `pending` (waiting on the customer) pauses the clock: when the ticket leaves
  pending, the business time that was left is granted again from that moment.
- A customer message after an agent reply starts the optional next-response
  clock (`next_due_at`); the next agent reply stops it.
- `check_sla` records one `sla_warning` and one `sla_breach` event per ticket,
  and one `next_response_breach` per unanswered follow-up,
  selected with indexed SQL filters only (it runs every minute), rows locked
  with SKIP LOCKED so several instances never record an event twice.
- `auto_solve_pending` solves tickets left pending without a customer reply.
Works in the caller's session; never commits; reads no clock (now is passed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.calendar import BusinessCalendar
from maild.store import repo
from maild.store.models import Ticket

log = logging.getLogger("maild.sla")
OPEN_STATUSES = ("new", "open")


def start_clock(ticket: Ticket, calendar: BusinessCalendar, target: timedelta,
                arrived: datetime, warn_fraction: float) -> None:
    ticket.sla_due_at = calendar.add(arrived, target)
    ticket.sla_warn_at = calendar.add(arrived, target * warn_fraction)


def start_next_response(ticket: Ticket, calendar: BusinessCalendar, target: timedelta | None,
                        arrived: datetime) -> None:
    """A customer wrote again after an agent reply: the next reply is due within `target`."""
    if target is None or ticket.first_response_at is None or ticket.next_due_at is not None:
        return
    ticket.next_due_at = calendar.add(arrived, target)
    ticket.next_breached = False


def answered(ticket: Ticket) -> None:
    """An agent replied: the next-response clock stops."""
    ticket.next_due_at = None
    ticket.next_breached = False


def set_status(session: Session, ticket: Ticket, status: str, at: datetime, *,
               actor: str = "maild", calendar: BusinessCalendar | None = None,
               reason: str | None = None) -> None:
    """Change status with a `status` event; handles pending pause/resume and solved_at."""
    old = ticket.status
    if old == status:
        return
    if old == "pending" and calendar is not None:
        _resume(session, ticket, calendar, at)
    ticket.status = status
    ticket.pending_since = at if status == "pending" else None
    ticket.solved_at = at if status == "solved" else None
    detail = {"from": old, "to": status, **({"reason": reason} if reason else {})}
    repo.add_event(session, ticket.id, at, "status", actor=actor, **detail)


def _resume(session: Session, ticket: Ticket, calendar: BusinessCalendar,
            at: datetime) -> None:
    """Grant again the business time that was left when the ticket went pending."""
    paused = ticket.pending_since
    if paused is None or ticket.first_response_at is not None or ticket.sla_due_at is None:
        return
    left = calendar.business_seconds(paused, ticket.sla_due_at)
    warn_left = calendar.business_seconds(paused, ticket.sla_warn_at) if ticket.sla_warn_at \
        else 0.0
    ticket.sla_due_at = calendar.add(at, timedelta(seconds=left))
    if ticket.sla_warned_at is None and ticket.sla_warn_at is not None:
        ticket.sla_warn_at = calendar.add(at, timedelta(seconds=warn_left))
    repo.add_event(session, ticket.id, at, "sla_resumed", paused_at=paused.isoformat(),
                   due_at=ticket.sla_due_at.isoformat())


@dataclass
class SlaReport:
    warned: list[int] = field(default_factory=list)
    breached: list[int] = field(default_factory=list)
    next_breached: list[int] = field(default_factory=list)


def check_sla(session: Session, now: datetime) -> SlaReport:
    """Record warnings and breaches that are due at `now` (each once per ticket)."""
    report = SlaReport()
    unanswered = (Ticket.status.in_(OPEN_STATUSES), Ticket.first_response_at.is_(None))
    breaching = session.scalars(select(Ticket).where(
        *unanswered, Ticket.sla_breached.is_(False), Ticket.sla_due_at <= now
    ).with_for_update(skip_locked=True)).all()
    for t in breaching:
        t.sla_breached = True
        repo.add_event(session, t.id, now, "sla_breach", due_at=_iso(t.sla_due_at))
        report.breached.append(t.id)
        log.warning("ticket #%d: SLA breached (due %s, no agent reply)", t.id,
                    _iso(t.sla_due_at))
    warning = session.scalars(select(Ticket).where(
        *unanswered, Ticket.sla_warned_at.is_(None), Ticket.sla_warn_at <= now,
        Ticket.sla_breached.is_(False)).with_for_update(skip_locked=True)).all()
    for t in warning:
        t.sla_warned_at = now
        repo.add_event(session, t.id, now, "sla_warning", due_at=_iso(t.sla_due_at))
        report.warned.append(t.id)
        log.info("ticket #%d: SLA at risk, due %s", t.id, _iso(t.sla_due_at))
    late = session.scalars(select(Ticket).where(
        Ticket.status.in_(OPEN_STATUSES), Ticket.next_breached.is_(False),
        Ticket.next_due_at <= now).with_for_update(skip_locked=True)).all()
    for t in late:
        t.next_breached = True
        repo.add_event(session, t.id, now, "next_response_breach", due_at=_iso(t.next_due_at))
        report.next_breached.append(t.id)
        log.warning("ticket #%d: next-response SLA breached (due %s)", t.id, _iso(t.next_due_at))
    return report


def auto_solve_pending(session: Session, now: datetime, days: int) -> list[int]:
    """Solve tickets pending for `days` with no customer message since."""
    if days <= 0:
        return []
    cutoff = now - timedelta(days=days)
    stale = session.scalars(select(Ticket).where(
        Ticket.status == "pending", Ticket.pending_since <= cutoff).with_for_update(
        skip_locked=True)).all()
    solved = []
    for t in stale:
        if t.last_customer_at is not None and t.pending_since is not None \
                and t.last_customer_at > t.pending_since:
            continue
        set_status(session, t, "solved", now, reason=f"pending for {days} days without reply")
        repo.add_event(session, t.id, now, "auto_solved", days=days)
        solved.append(t.id)
    return solved


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
