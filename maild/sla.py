"""First-response SLA bookkeeping: due and warning times, status changes that
pause and resume the clock, the periodic check, and the pending auto-solve.

- A new ticket gets `sla_due_at` = arrival + the policy's target in business
  time, and `sla_warn_at` = arrival + `warn_fraction` of that target.
- `pending` (waiting on the customer) pauses the clock: when the ticket leaves
  pending, the business time that was left is granted again from that moment.
- A customer message after an agent reply starts the optional next-response
  clock (`next_due_at`); the next agent reply stops it.
- A reopen (a customer message on a solved ticket) ends the targets the solved
  ticket had (`reopened`) and starts a new one from the reopening message
  (`restart_on_reopen`): the first-response target again if the ticket was never
  answered and its first target was not breached, else the next-response target.
  So a warning or breach is only ever recorded against a due time that lies after
  the event that set it, and a closed period's figures never change.
- `check_sla` records one `sla_warning` and one `sla_breach` event per ticket,
  and one `next_response_breach` per unanswered follow-up, set-based (per kind
  one UPDATE ... RETURNING and one INSERT ... SELECT per 10,000 tickets, however
  many are due at once after downtime), selected with indexed SQL filters only
  (it runs every minute), rows locked with SKIP LOCKED so several instances
  never record an event twice. It logs one line per ticket, or one summary line when more than
  `LOG_EACH_UP_TO` are due at once.
- `auto_solve_pending` solves tickets left pending without a customer reply.
Works in the caller's session; never commits; reads no clock (now is passed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ColumnElement, Select, insert, inspect, literal, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from maild.calendar import BusinessCalendar
from maild.store import repo
from maild.store.after_commit import log_after_commit
from maild.store.models import Event, Ticket

log = logging.getLogger("maild.sla")
OPEN_STATUSES = ("new", "open")
LOG_EACH_UP_TO = 20  # more tickets at once (after downtime): one summary log line
ID_CHUNK = 10_000  # ids bound per statement (SQLite >= 3.35, needed for RETURNING, allows 32,766)
RECORD_CHUNK = 10_000  # tickets flagged per statement: memory stays flat after downtime


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


def reopened(ticket: Ticket) -> None:
    """A customer wrote on a solved ticket (call before it leaves `solved`): the targets
    it had are over. An unanswered first response met by solving (no breach recorded)
    is cleared, for `restart_on_reopen` to set again; a breached one stays, counted in
    the period of its due time. The next-response clock stops either way."""
    if ticket.first_response_at is None and not ticket.sla_breached:
        ticket.sla_due_at = ticket.sla_warn_at = ticket.sla_warned_at = None
    ticket.next_due_at = None
    ticket.next_breached = False


def restart_on_reopen(ticket: Ticket, calendar: BusinessCalendar, first: timedelta,
                      following: timedelta | None, arrived: datetime,
                      warn_fraction: float) -> None:
    """The reopening message (arrived at `arrived`) gets its own target: the first
    response's if the ticket was never answered and its first target was cleared by
    `reopened`, else the next response's (none when the policy has no such target)."""
    if ticket.first_response_at is None and ticket.sla_due_at is None:
        start_clock(ticket, calendar, first, arrived, warn_fraction)
        ticket.sla_warned_at, ticket.sla_breached = None, False
    elif following is not None:
        ticket.next_due_at = calendar.add(arrived, following)
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
    unanswered = (Ticket.status.in_(OPEN_STATUSES), Ticket.first_response_at.is_(None))
    due, next_due = Ticket.sla_due_at, Ticket.next_due_at
    breached = _record(session, now, "sla_breach", due, {"sla_breached": True}, *unanswered,
                       Ticket.sla_breached.is_(False), due <= now)
    _log(session, logging.WARNING, due, breached,
         "ticket #%d: SLA breached (due %s, no agent reply)", "%d tickets breached their SLA")
    warned = _record(session, now, "sla_warning", due, {"sla_warned_at": now}, *unanswered,
                     Ticket.sla_warned_at.is_(None), Ticket.sla_warn_at <= now,
                     Ticket.sla_breached.is_(False))
    _log(session, logging.INFO, due, warned, "ticket #%d: SLA at risk, due %s",
         "%d tickets at risk of breaching their SLA")
    late = _record(session, now, "next_response_breach", next_due, {"next_breached": True},
                   Ticket.status.in_(OPEN_STATUSES), Ticket.next_breached.is_(False),
                   next_due <= now)
    _log(session, logging.WARNING, next_due, late,
         "ticket #%d: next-response SLA breached (due %s)",
         "%d tickets breached their next-response SLA")
    return SlaReport(warned=warned, breached=breached, next_breached=late)


def _record(session: Session, now: datetime, kind: str, due: InstrumentedAttribute[Any],
            values: dict[str, Any], *where: ColumnElement[bool]) -> list[int]:
    """Set `values` on the tickets matching `where`, skipping rows another instance has
    locked, and add one `kind` event for each (detail: the `due` time); returns their
    ids, sorted. Set-based, RECORD_CHUNK tickets per statement: UPDATE ... WHERE id IN
    (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED) RETURNING id, then INSERT INTO events ...
    SELECT; again while a whole chunk turned (a flagged ticket no longer matches). One
    statement for all was a result of every ticket in memory at once: +110 MB when a
    first run's 440,000 history tickets were past due."""
    ids: list[int] = []
    while True:
        locked = (select(Ticket.id).where(*where).order_by(Ticket.id).limit(RECORD_CHUNK)
                  .with_for_update(skip_locked=True))
        turned = _record_chunk(session, now, kind, due, values, locked)
        ids += turned
        if len(turned) < RECORD_CHUNK:
            return sorted(ids)


def _record_chunk(session: Session, now: datetime, kind: str, due: InstrumentedAttribute[Any],
                  values: dict[str, Any], locked: Select[Any]) -> list[int]:
    if session.get_bind().dialect.name == "postgresql":
        return _record_in_one_statement(session, now, kind, due, values, locked)
    ids = sorted(session.scalars(
        update(Ticket).where(Ticket.id.in_(locked)).values(**values).returning(Ticket.id),
        execution_options={"synchronize_session": False}))
    _expire(session, ids, list(values))
    for chunk in range(0, len(ids), ID_CHUNK):
        session.execute(insert(Event).from_select(
            ["ticket_id", "at", "kind", "actor", "detail"],
            select(Ticket.id, literal(now, Event.at.type), literal(kind), literal("maild"),
                   _DueDetail(due)).where(Ticket.id.in_(ids[chunk:chunk + ID_CHUNK]))))
    return ids


def _record_in_one_statement(session: Session, now: datetime, kind: str,
                             due: InstrumentedAttribute[Any], values: dict[str, Any],
                             locked: Select[Any]) -> list[int]:
    """`_record` for PostgreSQL, which runs an UPDATE inside a WITH: the events are
    inserted from the UPDATE's RETURNING, without a second pass over tickets."""
    flagged = (update(Ticket).where(Ticket.id.in_(locked)).values(**values)
               .returning(Ticket.id, due.label("due")).cte("flagged"))
    events = insert(Event).from_select(
        ["ticket_id", "at", "kind", "actor", "detail"],
        select(flagged.c.id, literal(now, Event.at.type), literal(kind), literal("maild"),
               _DueDetail(flagged.c.due))).returning(Event.ticket_id)
    ids = sorted(int(tid) for tid in session.scalars(
        events, execution_options={"synchronize_session": False}) if tid is not None)
    _expire(session, ids, list(values))
    return ids


def _expire(session: Session, ids: list[int], attributes: list[str]) -> None:
    """Make the session's loaded copies of these tickets reload the updated attributes
    (what synchronize_session="fetch" does, without building 50,000 identity keys)."""
    wanted = set(ids)
    for obj in list(session.identity_map.values()):
        key = inspect(obj).identity
        if isinstance(obj, Ticket) and key is not None and key[0] in wanted:
            session.expire(obj, attributes)


class _DueDetail(FunctionElement[dict[str, Any]]):
    """SQL for the event detail `{"due_at": due.isoformat()}` of a naive-UTC column: the
    same text Python writes ("2026-11-09T07:00:00+00:00", microseconds only if any)."""

    type = JSON()
    inherit_cache = True


@compiles(_DueDetail, "sqlite")
def _due_detail_sqlite(element: _DueDetail, compiler: SQLCompiler, **kw: Any) -> str:
    at = compiler.process(element.clauses, **kw)  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff'
    return (f"json_object('due_at', replace(CASE WHEN substr({at}, 20) = '.000000' "
            f"THEN substr({at}, 1, 19) ELSE {at} END, ' ', 'T') || '+00:00')")


@compiles(_DueDetail, "postgresql")
def _due_detail_postgresql(element: _DueDetail, compiler: SQLCompiler, **kw: Any) -> str:
    at = compiler.process(element.clauses, **kw)
    return (f"json_build_object('due_at', to_char({at}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
            f"CASE WHEN mod(date_part('microseconds', {at})::integer, 1000000) = 0 THEN '' "
            f"ELSE to_char({at}, '.US') END || '+00:00')")


def _log(session: Session, level: int, due: InstrumentedAttribute[Any], ids: list[int],
         each: str, many: str) -> None:
    """One line per ticket, or one summary line (with the first ids) when many at once."""
    if len(ids) <= LOG_EACH_UP_TO:
        for tid, at in session.execute(select(Ticket.id, due).where(Ticket.id.in_(ids))
                                       .order_by(Ticket.id)):
            log_after_commit(session, log, level, each, tid, _iso(at))
        return
    log_after_commit(session, log, level, many + " (ids %s, ...)", len(ids),
                     ", ".join(str(tid) for tid in ids[:LOG_EACH_UP_TO]))


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
