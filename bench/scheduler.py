"""Scheduler queries at scale: `check_sla` and the 30-day `compute_stats` over N tickets.

Bulk-inserts (SQLAlchemy Core, dicts) N open tickets (new/open/pending) with
created_at spread over 30 days and first-response due/warn times after it, each
with its first inbound message, an ETA auto-reply for most, an agent reply for
the answered ones, an `opened` event; plus N/10 solved tickets (status events,
a few reopened) so the KPI queries have history. The SLA flags are in the steady
state of a daemon that has been running (everything due more than a minute ago is
already warned/breached). Then times, each once and rolled back: the baseline
`SELECT count(*) FROM tickets`; `check_sla(session, now)` (steady state: the
once-a-minute run); `check_sla` after downtime (flags reset first, untimed: every
overdue ticket at once); `compute_stats` for the last 30 days. Target: <= 1 s each.
No Dovecot needed: --messages is the number of open tickets.

    .venv/bin/python -m bench.scheduler                   # 100,000 tickets, both backends
    .venv/bin/python -m bench.scheduler --quick --profile
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from bench.common import database, log_to_file, make_parser, parse, profiled, verdict
from maild.calendar import BusinessCalendar
from maild.report import compute_stats
from maild.sla import check_sla
from maild.store.db import make_engine, upgrade
from maild.store.models import Customer, Event, Mailbox, MessageRow, Ticket

TARGET = 1.0
CHUNK = 5000
AGENTS = [("Ayşe Agent", "ayse@support.example"), ("Bob Agent", "bob@support.example"),
          ("Çağrı Destek", "cagri@support.example"), ("Dana Agent", "dana@support.example")]
CALENDAR = BusinessCalendar("Europe/Istanbul", "Mon-Fri 09:00-18:00", "TR")


class Rows:
    """Generates one chunk of tickets with their messages and events."""

    def __init__(self, now: datetime, customers: int, seed: int = 7, days: float = 30) -> None:
        self.now, self.customers, self.rnd = now, customers, random.Random(seed)
        self.days = days  # created_at is spread uniformly over the last `days`
        self.message_count = 0
        self.tickets: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def _ago(self, days: float) -> datetime:
        return self.now - timedelta(seconds=self.rnd.uniform(0, days * 86400))

    def ticket(self, tid: int, solved: bool) -> None:
        r = self.rnd
        created = self._ago(self.days)
        status = "solved" if solved else r.choices(["new", "open", "pending"], [35, 45, 20])[0]
        answered = status in ("pending", "solved") or (status == "open" and r.random() < .7)
        first = min(created + timedelta(minutes=r.uniform(5, 2880)), self.now) \
            if answered else None
        due = created + timedelta(hours=r.uniform(4, 72))
        warn = created + (due - created) * 0.75
        settled = self.now - timedelta(minutes=1)  # the steady state of a running daemon
        solved_at = min(first + timedelta(hours=r.uniform(1, 48)), self.now) \
            if solved and first else None
        agent = r.choice(AGENTS) if first else None
        self.tickets.append({
            "id": tid, "mailbox_id": 1, "customer_id": r.randint(1, self.customers),
            "subject": f"Order {tid} has not arrived", "normalized_subject":
            f"order {tid} has not arrived", "status": status, "priority": "normal",
            "tags": [], "sla_policy": "default", "sla_due_at": due,
            "sla_breached": first is None and due <= settled, "first_response_at": first,
            "agent_replies": int(answered), "assignee": None, "created_at": created,
            "updated_at": first or created, "last_customer_at": created,
            "solved_at": solved_at, "language": "en", "sla_warn_at": warn,
            "sla_warned_at": warn if first is None and warn <= settled else None,
            "pending_since": first if status == "pending" else None, "suggestions": [],
            # recorded with the first response, as the writer does (not timed: load)
            "frt_wall_seconds": (first - created).total_seconds() if first else None,
            "frt_business_seconds": CALENDAR.business_seconds(created, first) if first
            else None, "first_responder": agent[0] if agent else None})
        before = len(self.messages)
        self._messages(tid, created, first, agent)
        self.message_count += len(self.messages) - before
        self._events(tid, created, solved_at, first is None and due <= settled, due)

    def _messages(self, tid: int, created: datetime, first: datetime | None,
                  agent: tuple[str, str] | None) -> None:
        self.messages.append(self._message(tid, "in", False, ("Customer", f"c{tid}@example.org"),
                                           created))
        if self.rnd.random() < 0.6:
            self.messages.append(self._message(tid, "out", True, ("Support", "support@x.example"),
                                               created + timedelta(seconds=2)))
        if first is not None and agent is not None:
            self.messages.append(self._message(tid, "out", False, agent, first))

    def _message(self, tid: int, direction: str, auto: bool, who: tuple[str, str],
                 at: datetime) -> dict[str, Any]:
        return {"ticket_id": tid, "mailbox_id": 1, "message_id":
                f"<t{tid}.{direction}.{int(auto)}.{self.rnd.getrandbits(32)}@bench>",
                "in_reply_to": None, "references": None, "direction": direction, "auto": auto,
                "from_addr": who[1], "from_name": who[0], "to_addrs": [], "cc_addrs": [],
                "subject": f"Order {tid}", "date": at, "received_at": at, "arrived_at": at,
                "text": "Hello, I ordered last week and nothing has arrived yet. " * 5,
                "html": "", "raw_size": 1800, "attachments": [], "parse_error": None,
                "folder": "INBOX" if direction == "in" else "Sent", "uidvalidity": 1,
                "uid": None, "created_at": at}

    def _events(self, tid: int, created: datetime, solved_at: datetime | None,
                breached: bool, due: datetime) -> None:
        ev = [(created, "opened", {"reason": "new"})]
        if solved_at is not None:
            ev.append((solved_at, "status", {"from": "open", "to": "solved"}))
            if self.rnd.random() < 0.05:
                ev.append((min(solved_at + timedelta(hours=2), self.now), "reopened", {}))
        if breached:
            ev.append((due, "sla_breach", {"due_at": due.isoformat()}))
        self.events += [{"ticket_id": tid, "at": at, "kind": kind, "actor": "maild",
                         "detail": detail} for at, kind, detail in ev]


def populate(engine: Engine, count: int, now: datetime, days: float = 30,
             messages: int | None = None) -> float:
    """Insert the data set; returns seconds. `count` open tickets and count/10 solved
    ones created over the last `days`; with `messages`, tickets (one in eleven solved)
    until that many messages are in instead."""
    started = time.perf_counter()
    total = count + count // 10 if messages is None else messages  # more than needed
    customers = max(1, total // 3)
    with engine.begin() as conn:
        conn.execute(Mailbox.__table__.insert(), [{"id": 1, "address": "support@x.example",
                                                    "created_at": now - timedelta(days=60)}])
        conn.execute(Customer.__table__.insert(), [
            {"id": i, "address": f"c{i}@example.org", "name": f"Customer {i}",
             "created_at": now - timedelta(days=60)} for i in range(1, customers + 1)])
    rows = Rows(now, customers, days=days)
    for tid in range(1, total + 1):
        rows.ticket(tid, solved=tid > count if messages is None else tid % 11 == 0)
        last = tid == total or (messages is not None and rows.message_count >= messages)
        if len(rows.tickets) >= CHUNK or last:
            with engine.begin() as conn:
                for table, data in ((Ticket, rows.tickets), (MessageRow, rows.messages),
                                    (Event, rows.events)):
                    conn.execute(table.__table__.insert(), data)
            rows.tickets, rows.messages, rows.events = [], [], []
        if last:
            break
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('tickets', 'id'), "
                                 "(SELECT max(id) FROM tickets))")
            conn.exec_driver_sql("ANALYZE tickets, messages, events, customers")
    return time.perf_counter() - started


def timed(engine: Engine, fn: Callable[[Session], Any],
          prepare: Callable[[Session], Any] | None = None) -> tuple[float, Any]:
    """Run fn once in a transaction that is rolled back; `prepare` is not timed."""
    with Session(engine) as session, session.begin():
        if prepare is not None:
            prepare(session)
        started = time.perf_counter()
        result = fn(session)
        session.flush()
        elapsed = time.perf_counter() - started
        session.rollback()
    return elapsed, result


def reset_flags(session: Session) -> None:
    """The state after downtime: nothing due has been flagged (or its event recorded)."""
    session.execute(update(Ticket).values(sla_breached=False, sla_warned_at=None))
    session.execute(delete(Event).where(Event.kind.in_(("sla_breach", "sla_warning"))))


def committed(engine: Engine, fn: Callable[[Session], Any]) -> None:
    """Run fn and commit; then let PostgreSQL clean up as autovacuum would (not timed)."""
    with Session(engine) as session, session.begin():
        fn(session)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE tickets, events, messages")


def measure(engine: Engine, now: datetime, profile: bool) -> dict[str, tuple[float, Any]]:
    """After downtime first (flags reset and committed, then one check, rolled back),
    then the steady state: that check committed, then the once-a-minute check and stats."""
    since = now - timedelta(days=30)
    out = {"count": timed(engine, lambda s: s.scalar(select(func.count()).select_from(Ticket)))}
    committed(engine, reset_flags)
    with profiled(profile, "check_sla after downtime"):
        out["sla_cold"] = timed(engine, lambda s: check_sla(s, now))
    committed(engine, lambda s: check_sla(s, now))
    out["sla"] = timed(engine, lambda s: check_sla(s, now))
    with profiled(profile, "compute_stats 30 days"):
        out["stats"] = timed(engine, lambda s: compute_stats(s, CALENDAR, since, now, now))
    return out


def report(kind: str, count: int, m: dict[str, tuple[float, Any]], load_s: float) -> bool:
    base = m["count"][0]
    print(f"scheduler {kind}: {count} open + {count // 10} solved tickets loaded in "
          f"{load_s:.0f} s; baseline SELECT count(*) FROM tickets {base * 1000:.1f} ms "
          f"(= {m['count'][1]})")
    ok = True
    for key, label in (("sla", "check_sla (steady, once a minute)"),
                       ("sla_cold", "check_sla after downtime"),
                       ("stats", "compute_stats 30 days")):
        secs, result = m[key]
        what = (f"{len(result.warned)} warned, {len(result.breached)} breached"
                if key != "stats" else f"{result['tickets_created']} created, "
                f"{result['first_responses']} first responses")
        ok &= secs <= TARGET
        print(f"scheduler {kind}: {label} {secs:.3f} s ({what}), ratio {secs / base:,.0f}x "
              f"count(*) (target <= {TARGET:.0f} s) {verdict(secs <= TARGET)}", flush=True)
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(make_parser(__doc__.splitlines()[0], default=100000, quick=2000), argv)
    ok = []
    with tempfile.TemporaryDirectory(prefix="maild-bench-") as tmp:
        log_to_file(Path(tmp) / "maild.log")
        for kind in args.backends:
            with database(kind, Path(tmp)) as url:
                engine = make_engine(url)
                upgrade(engine)
                now = datetime.now(UTC).replace(microsecond=0)
                load_s = populate(engine, args.messages, now)
                ok.append(report(kind, args.messages, measure(engine, now, args.profile),
                                 load_s))
                engine.dispose()
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
