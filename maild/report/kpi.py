"""KPIs of one period: the numbers `maild stats --json` reports and the digest shows.

What it is for: turning tickets, messages and events into the figures defined in
DESIGN.md "Metric definitions" (docs/metrics.md spells out every formula) for a
half-open period [since, until), identically on SQLite and PostgreSQL.

What it must not do: read the clock (`now` is passed in), write to the database,
load every message into Python (counts and joins are SQL aggregates; only the
timestamps of the tickets first answered in the period are loaded, to compute
business time and percentiles), or format numbers for people (see `digest`).

Data stamped at or after `min(until, now)` is ignored, so replaying history with
an earlier `now` sees only what was known then.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from maild.calendar import BusinessCalendar
from maild.classify import MACHINE_KINDS
from maild.store.models import Event, Mailbox, MessageRow, Ticket
from maild.surveys.figures import merge_per_agent, survey_figures

UNKNOWN_AGENT = "(unknown)"
AGE_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("<4h", 4), ("4-24h", 24), ("1-3d", 72), ("3-7d", 168), (">7d", None))


class FirstResponse(NamedTuple):
    """One ticket first answered in the period: the inputs of FRT and SLA figures.
    (A NamedTuple: tens of thousands are made per `stats`, and it builds fastest.)"""

    mailbox_id: int
    agent: str  # the address of the reply's From (lower-case), see `agent_key`
    wall: float
    business: float
    attained: bool | None  # None: the ticket had no SLA due time


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (Hyndman-Fan type 7, numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    h = (len(xs) - 1) * fraction
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summary(values: Sequence[float]) -> dict[str, float | None]:
    mean = sum(values) / len(values) if values else None
    return {"median": _round(percentile(values, 0.5)), "p90": _round(percentile(values, 0.9)),
            "mean": _round(mean)}


def ticket_scope(mailbox_id: int | None) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [Ticket.status != "filtered"]
    if mailbox_id is not None:
        conds.append(Ticket.mailbox_id == mailbox_id)
    return conds


def _agent_message(m: Any = MessageRow) -> list[ColumnElement[bool]]:
    return [m.direction == "out", m.auto == false()]


def _solve(ev: Any) -> ColumnElement[bool]:
    """`ev` (Event or an alias) moved its ticket into solved."""
    return and_(ev.kind == "status", ev.detail["to"].as_string() == "solved")


def _undo(ev: Any) -> ColumnElement[bool]:
    """`ev` moved its ticket out of solved: reopened, or a status event from solved."""
    return or_(ev.kind == "reopened",
               and_(ev.kind == "status", ev.detail["from"].as_string() == "solved",
                    ev.detail["to"].as_string() != "solved"))


def _transitions(end: datetime, since: datetime | None = None) -> Any:
    """(tid, at, undo) of every move into and out of `solved` in [since, end) (before
    `end` without `since`): status events into solved, the current solved_at of solved
    tickets (undo 0); `reopened` events and status events out of solved (undo 1)."""
    def window(at: Any) -> list[ColumnElement[bool]]:
        return [at < end, *([at >= since] if since is not None else [])]

    return union_all(
        select(Event.ticket_id.label("tid"), Event.at.label("at"), literal(0).label("undo"))
        .where(_solve(Event), *window(Event.at)),
        select(Ticket.id, Ticket.solved_at, literal(0))
        .where(Ticket.status == "solved", Ticket.solved_at.is_not(None),
               *window(Ticket.solved_at)),
        select(Event.ticket_id, Event.at, literal(1))
        .where(_undo(Event), *window(Event.at)),
    ).subquery()


def _still_solved(end: datetime, since: datetime | None = None) -> Any:
    """(tid, at) of the tickets solved just before instant `end`, `at` their last solve:
    those whose latest move before `end` is into solved (an undo at the same instant as
    a solve wins: it came after it). One pass over the moves, numbered per ticket,
    not a lookup of undos per solved ticket. With `since`, only the tickets whose last
    solve is at or after it: their latest move is then in [since, end), so only the
    moves of that window are read (by index)."""
    moves = _transitions(end, since)
    latest = select(moves.c.tid, moves.c.at, moves.c.undo, func.row_number().over(
        partition_by=moves.c.tid, order_by=(moves.c.at.desc(), moves.c.undo.desc()),
    ).label("n")).subquery()
    return select(latest.c.tid, latest.c.at).where(latest.c.n == 1, latest.c.undo == 0
                                                    ).subquery()


def _undone(tid: Any, at: Any, end: datetime) -> ColumnElement[bool]:
    """Correlated to the enclosing query: an undo of ticket `tid`'s solve at instant
    `at`, before `end`."""
    u = aliased(Event)
    return select(u.id).where(
        u.ticket_id == tid, u.at >= at, u.at < end, _undo(u)).exists()


def is_solved(end: datetime) -> ColumnElement[bool]:
    """Correlated to `Ticket`: is it solved just before `end` (as `solved_at`)? A solve
    before `end` that no undo followed. A few index seeks per ticket: for queries that
    look at few tickets (`waiting` with a LIMIT); `solved_at` for many."""
    e = aliased(Event)
    by_event = select(e.id).where(
        e.ticket_id == Ticket.id, _solve(e), e.at < end, ~_undone(e.ticket_id, e.at, end)).exists()
    legacy = and_(Ticket.status == "solved", Ticket.solved_at < end,
                  ~_undone(Ticket.id, Ticket.solved_at, end))
    return or_(by_event, legacy)


def solved_at(end: datetime) -> Select[tuple[int]]:
    """Ids of the tickets whose status just before instant `end` is solved."""
    return select(_still_solved(end).c.tid)


def solved_during(since: datetime, end: datetime) -> Select[tuple[int]]:
    """Ids of tickets moved to solved in [since, end) and still solved at `end`: those
    solved at `end` whose last move into solved was at or after `since`."""
    return select(_still_solved(end, since).c.tid)


def first_responses(session: Session, calendar: BusinessCalendar, since: datetime,
                    end: datetime, mailbox_id: int | None = None) -> list[FirstResponse]:
    """Tickets whose first agent reply is in [since, end), timed from the first customer
    message (its creation when there is none) and attributed to the reply's author.

    The writer records each ticket's figures with its first response; tickets without
    them (stored before they were recorded, or invalidated by older mail stored later)
    are computed here from their messages, with `calendar`."""
    period = (Ticket.first_response_at >= since, Ticket.first_response_at < end,
              *ticket_scope(mailbox_id))
    recorded = and_(Ticket.frt_business_seconds.is_not(None),
                    Ticket.frt_wall_seconds.is_not(None), Ticket.first_responder.is_not(None))
    met = case((Ticket.sla_due_at.is_(None), None),
               (Ticket.first_response_at <= Ticket.sla_due_at, True), else_=False)
    columns = (Ticket.frt_wall_seconds, Ticket.frt_business_seconds, met)
    if session.get_bind().dialect.name == "sqlite":  # in-process seeks: cheapest per ticket
        query = select(Ticket.mailbox_id, _responder_address(), Ticket.first_responder,
                       *columns)
    else:  # one pass over the period's replies, hash-joined: far less than a seek each
        replies = _replies_by_instant(since, end)
        query = select(Ticket.mailbox_id, replies.c.addr, Ticket.first_responder,
                       *columns).outerjoin(replies, and_(
                           replies.c.tid == Ticket.id, replies.c.at == Ticket.first_response_at))
    rows = session.connection().execute(query.where(*period, recorded))
    out = [FirstResponse(mailbox, addr.lower() if addr else recorded_name, wall, business, ok)
           for mailbox, addr, recorded_name, wall, business, ok in rows]
    out += _computed_first_responses(session, calendar, (*period, ~recorded))
    return out


def _responder_address() -> Any:
    """The From address of the agent reply that is the ticket's first response (the one
    arrived at `first_response_at`), as a correlated subquery: one index seek per ticket.
    `tickets.first_responder` holds a display name, which does not tell agents apart."""
    m = aliased(MessageRow)
    return select(func.min(m.from_addr)).where(
        m.ticket_id == Ticket.id, *_agent_message(m),
        m.arrived_at == Ticket.first_response_at).scalar_subquery()


def _replies_by_instant(since: datetime, end: datetime) -> Any:
    """(tid, at, addr): the From address of the agent replies in [since, end), one row per
    ticket and instant; joined on `first_response_at`, the first responder's address (as
    `_responder_address`). Read from ix_messages_direction_arrived alone."""
    m = MessageRow
    return (select(m.ticket_id.label("tid"), m.arrived_at.label("at"),
                   func.min(m.from_addr).label("addr"))
            .where(*_agent_message(), m.arrived_at >= since, m.arrived_at < end)
            .group_by(m.ticket_id, m.arrived_at).subquery())


def _computed_first_responses(session: Session, calendar: BusinessCalendar,
                              where: Sequence[ColumnElement[bool]]) -> list[FirstResponse]:
    """`first_responses` for the tickets matching `where` (those without recorded
    figures), from their messages."""
    m = MessageRow
    first_in = func.min(case((and_(m.direction == "in", m.auto == false()), m.arrived_at)))
    author = func.min(case((and_(*_agent_message(), m.arrived_at == Ticket.first_response_at),
                            m.from_addr)))
    ticket = (Ticket.id, Ticket.mailbox_id, Ticket.created_at, Ticket.first_response_at,
              Ticket.sla_due_at)
    rows = session.execute(select(
        Ticket.id, Ticket.mailbox_id, func.coalesce(first_in, Ticket.created_at),
        Ticket.first_response_at, Ticket.sla_due_at, author,
    ).outerjoin(m, m.ticket_id == Ticket.id).where(*where).group_by(*ticket)).all()
    out = []
    for _tid, mailbox, start, answered, due, who in rows:
        start = _aware(start)
        wall = max(0.0, (answered - start).total_seconds())
        out.append(FirstResponse(mailbox, (who or "").lower() or UNKNOWN_AGENT, wall,
                                 calendar.business_seconds(start, answered),
                                 None if due is None else answered <= due))
    return out


def agent_key(address: str, agents: Mapping[str, str]) -> str:
    """Who an agent reply is attributed to: the From address (lower-case; a `+tag`
    dropped when the plain address is an `[agents]` one). Replies from the shared
    mailbox's own address are that address: one entry, whatever display names they used."""
    addr = address.strip().lower()
    if not addr:
        return UNKNOWN_AGENT
    local, _, domain = addr.rpartition("@")
    plain = f"{local.split('+', 1)[0]}@{domain}" if local else addr
    return plain if plain != addr and plain in agents else addr


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite hands back COALESCE() results as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def breached_in(since: datetime, end: datetime) -> list[ColumnElement[bool]]:
    """Tickets whose first-response SLA was due in [since, end) and not met: answered
    late, or unanswered while the clock ran (not waiting on the customer since before
    the due time, whose reply moves the due time; not solved before it)."""
    return [Ticket.sla_due_at >= since, Ticket.sla_due_at < end,
            or_(Ticket.first_response_at > Ticket.sla_due_at,
                and_(Ticket.first_response_at.is_(None),
                     ~and_(Ticket.status == "pending", Ticket.pending_since <= Ticket.sla_due_at),
                     ~and_(Ticket.status == "solved", Ticket.solved_at <= Ticket.sla_due_at)))]


def ticket_counts(session: Session, since: datetime, end: datetime,
                  mailbox_id: int | None) -> dict[int, dict[str, int]]:
    """Per mailbox id, the period's ticket counts: created, resolved (created and solved
    at `end`), breaches, backlog and its age buckets.

    Two aggregates instead of one join of every ticket with the solved ones: (1) every
    ticket created before `end`, by age bucket, with no join (a plain scan PostgreSQL
    runs in parallel); (2) the tickets solved at `end` (few next to the rest), by the
    same buckets. The backlog is (1) less (2)."""
    scope = ticket_scope(mailbox_id)
    created = and_(Ticket.created_at >= since, Ticket.created_at < end)
    buckets: dict[str, ColumnElement[bool]] = {}
    newer_than: datetime | None = None
    for name, hours in AGE_BUCKETS:
        limit = end - timedelta(hours=hours) if hours is not None else None
        buckets[name] = and_(*([Ticket.created_at <= newer_than] if newer_than else []),
                             *([Ticket.created_at > limit] if limit else []), true())
        newer_than = limit
    every = {"backlog": true(), **buckets}
    out: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(
        ("created", "resolved", "breaches", "backlog", *buckets), 0))
    for row in session.execute(_counted(
            {"created": created, "breaches": and_(*breached_in(since, end)), **every})
            .where(Ticket.created_at < end, *scope)):
        out[row.mailbox_id].update(_ints(row))
    solved = solved_at(end).subquery("solved")
    for row in session.execute(_counted({"resolved": created, **every})
                               .join(solved, solved.c.tid == Ticket.id)
                               .where(Ticket.created_at < end, *scope)):
        counts = out[row.mailbox_id]
        counts["resolved"] = _ints(row)["resolved"]
        for key in every:
            counts[key] -= _ints(row)[key]
    return dict(out)


def _counted(conds: Mapping[str, ColumnElement[bool]]) -> Any:
    """SELECT mailbox_id, one count per condition FROM tickets ... GROUP BY mailbox_id."""
    return select(Ticket.mailbox_id, *(func.sum(case((cond, 1), else_=0)).label(key)
                                       for key, cond in conds.items())
                  ).group_by(Ticket.mailbox_id)


def _ints(row: Any) -> dict[str, int]:
    return {key: int(n or 0) for key, n in row._mapping.items() if key != "mailbox_id"}


def _otr(session: Session, since: datetime, end: datetime,
         scope: list[ColumnElement[bool]]) -> float | None:
    replies = select(func.count(MessageRow.id)).where(
        MessageRow.ticket_id == Ticket.id, *_agent_message(),
        MessageRow.arrived_at < end).scalar_subquery()
    solved, otr = session.execute(select(
        func.count(Ticket.id), func.coalesce(func.sum(case((replies == 1, 1), else_=0)), 0),
    ).where(Ticket.id.in_(solved_during(since, end)), *scope)).one()
    return ratio(int(otr), int(solved))


def waiting(session: Session, end: datetime, mailbox_id: int | None = None,
            limit: int | None = None) -> list[tuple[int, datetime]]:
    """(ticket id, waiting since) of backlog tickets with an unanswered customer message,
    oldest first: the earliest such message after the last agent reply before `end`.

    Customer messages are read oldest first with a LIMIT, so the longest wait costs a
    few index rows, not a pass over every message."""
    reply = aliased(MessageRow)
    answered = select(reply.id).where(
        reply.ticket_id == MessageRow.ticket_id, reply.direction == "out",
        reply.auto == false(), reply.arrived_at >= MessageRow.arrived_at,
        reply.arrived_at < end).exists()
    query = (select(MessageRow.ticket_id, MessageRow.arrived_at)
             .join(Ticket, Ticket.id == MessageRow.ticket_id)
             .where(MessageRow.direction == "in", MessageRow.auto == false(),
                    MessageRow.arrived_at < end, Ticket.created_at < end,
                    ~is_solved(end), *ticket_scope(mailbox_id), ~answered)
             .order_by(MessageRow.arrived_at, MessageRow.ticket_id))
    rows = limit
    while True:  # a ticket may have several unanswered messages: read more if needed
        out: dict[int, datetime] = {}
        found = session.execute(query.limit(rows)).all()
        for tid, at in found:
            out.setdefault(tid, _aware(at))
        if rows is None or len(out) >= rows or len(found) < rows:
            return list(out.items())[:limit]
        rows *= 4


def _per_agent(session: Session, frs: list[FirstResponse], since: datetime, end: datetime,
               mailbox_id: int | None, agents: Mapping[str, str]) -> list[dict[str, Any]]:
    """One entry per agent address (`agent_key`), named from `[agents]`, else by the
    display names its replies in the period used."""
    mailbox_scope = [] if mailbox_id is None else [MessageRow.mailbox_id == mailbox_id]
    replies: dict[str, int] = defaultdict(int)
    names: dict[str, set[str]] = defaultdict(set)
    spam = select(Ticket.id).where(Ticket.status == "filtered")  # few: no join per reply
    rows = session.execute(
        select(MessageRow.from_name, MessageRow.from_addr, func.count())
        .where(*_agent_message(), MessageRow.arrived_at >= since, MessageRow.arrived_at < end,
               MessageRow.ticket_id.not_in(spam), *mailbox_scope)
        .group_by(MessageRow.from_name, MessageRow.from_addr)).all()
    for name, addr, n in rows:
        key = agent_key(addr or "", agents)
        replies[key] += n
        if (name or "").strip():
            names[key].add(name.strip())
    by_author: dict[str, list[float]] = defaultdict(list)
    for f in frs:
        by_author[f.agent].append(f.business)
    frt: dict[str, list[float]] = defaultdict(list)
    for author, values in by_author.items():
        frt[agent_key(author, agents)] += values
    out = [{"agent": key,
            "name": agents.get(key) or ", ".join(sorted(names.get(key, ()))) or key,
            "replies": replies.get(key, 0),
            "first_responses": len(frt.get(key, [])),
            "frt_business_median": _round(percentile(frt.get(key, []), 0.5))}
           for key in set(replies) | set(frt)]
    return sorted(out, key=lambda a: (a["name"].casefold(), a["agent"]))


def filtered_mail(session: Session, since: datetime, end: datetime,
                  mailbox_id: int | None) -> dict[str, Any]:
    """Machine mail that arrived in [since, end), by kind: the messages classified
    `machine` at ingest (ix_messages_class_arrived), wherever they threaded."""
    mailbox_scope = [] if mailbox_id is None else [MessageRow.mailbox_id == mailbox_id]
    rows = session.execute(
        select(MessageRow.machine_kind, func.count())
        .where(MessageRow.sender_class == "machine", MessageRow.arrived_at >= since,
               MessageRow.arrived_at < end, MessageRow.direction == "in", *mailbox_scope)
        .group_by(MessageRow.machine_kind)).all()
    by_kind = dict.fromkeys(MACHINE_KINDS, 0)  # every kind, so scripts see a fixed shape
    for kind, n in rows:
        by_kind[kind or "other"] = by_kind.get(kind or "other", 0) + int(n)
    return {"total": sum(by_kind.values()), "by_kind": by_kind}


def delivery_failures(since: datetime, end: datetime,
                      mailbox_id: int | None) -> Select[Event]:
    """The `delivery_failed` events in [since, end) (on any ticket, filtered ones too:
    a bounce that threads nowhere opens one), oldest first."""
    query = select(Event).where(Event.kind == "delivery_failed", Event.at >= since,
                                Event.at < end)
    if mailbox_id is not None:
        query = query.join(Ticket, Ticket.id == Event.ticket_id).where(
            Ticket.mailbox_id == mailbox_id)
    return query.order_by(Event.at, Event.id)


def _per_mailbox(session: Session, frs: list[FirstResponse],
                 counts: dict[int, dict[str, int]],
                 mailbox_id: int | None) -> list[dict[str, Any]]:
    mb_filter = [] if mailbox_id is None else [Mailbox.id == mailbox_id]
    out = []
    for mid, address in session.execute(
            select(Mailbox.id, Mailbox.address).where(*mb_filter).order_by(Mailbox.id)):
        mine = [f for f in frs if f.mailbox_id == mid]
        due = [f.attained for f in mine if f.attained is not None]
        out.append({"mailbox": address,
                    "tickets_created": counts.get(mid, {}).get("created", 0),
                    "first_responses": len(mine),
                    "frt_business_median": _round(percentile([f.business for f in mine], 0.5)),
                    "sla_attained_pct": ratio(sum(due), len(due)),
                    "sla_breaches": counts.get(mid, {}).get("breaches", 0),
                    "backlog": counts.get(mid, {}).get("backlog", 0)})
    return out


def compute_stats(session: Session, calendar: BusinessCalendar, since: datetime,
                  until: datetime, now: datetime, mailbox_id: int | None = None,
                  agents: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The `stats --json` object for [since, until), seen at `now`. `agents`: the
    `[agents]` table (address -> name), which names `per_agent` entries."""
    end = min(until, now)
    team = {addr.strip().lower(): name for addr, name in (agents or {}).items()}
    failures = delivery_failures(since, end, mailbox_id).subquery()
    scope = ticket_scope(mailbox_id)
    frs = first_responses(session, calendar, since, end, mailbox_id)
    counts = ticket_counts(session, since, end, mailbox_id)
    n: dict[str, int] = defaultdict(int)
    for per_mailbox in counts.values():
        for key, value in per_mailbox.items():
            n[key] += value
    waits = waiting(session, end, mailbox_id, limit=1)
    reopened = session.scalar(select(func.count(Event.id)).join(
        Ticket, Ticket.id == Event.ticket_id).where(
        Event.kind == "reopened", Event.at >= since, Event.at < end, *scope)) or 0
    due = [f.attained for f in frs if f.attained is not None]
    surveys = survey_figures(session, since, end, mailbox_id, partial(agent_key, agents=team))
    return {
        "since": iso(since), "until": iso(until),
        "tickets_created": n["created"], "first_responses": len(frs),
        "frt_business_seconds": summary([f.business for f in frs]),
        "frt_wall_seconds": summary([f.wall for f in frs]),
        "sla": {"attained_pct": ratio(sum(due), len(due)), "breaches": n["breaches"]},
        "otr_rate": _otr(session, since, end, scope),
        "resolution_rate": ratio(n["resolved"], n["created"]),
        "reopened": reopened,
        "backlog": {"total": n["backlog"],
                    "age_buckets": {name: n[name] for name, _ in AGE_BUCKETS}},
        "longest_wait_seconds": (end - waits[0][1]).total_seconds() if waits else None,
        "per_agent": merge_per_agent(_per_agent(session, frs, since, end, mailbox_id, team),
                                     surveys["per_agent"], team),
        "per_mailbox": _per_mailbox(session, frs, counts, mailbox_id),
        "filtered": filtered_mail(session, since, end, mailbox_id),
        "delivery_failures": session.scalar(select(func.count()).select_from(failures)) or 0,
        "csat": surveys["csat"], "nps": surveys["nps"], "nps_detail": surveys["nps_detail"],
    }
