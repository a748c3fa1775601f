"""Issue 17 units: the history lane's checkpoint and progress, the cut-off, the
referenced Message-IDs, and the parse pool (with its fallback when a worker dies)."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from maild.config import parse_since
from maild.errors import ConfigError
from maild.history import HistoryLane, Pending, referenced_ids
from maild.parse import parse_message
from maild.parsepool import ParsePool, parse_all
from maild.store import history as store
from maild.store import repo
from maild.store.models import FolderState, MessageRow
from tests.builders import migrated_sessions, utc

NOW = utc(2026, 12, 1, 12)


def test_parse_since_periods_and_dates() -> None:
    assert parse_since("90d", NOW) == NOW - timedelta(days=90)
    assert parse_since(" 12W ", NOW) == NOW - timedelta(weeks=12)
    assert parse_since("2026-01-01", NOW) == datetime(2026, 1, 1, tzinfo=UTC)
    for bad in ("", "0d", "90", "d", "3m", "2026-13-01", "-5d"):
        with pytest.raises(ConfigError, match="expected a period"):
            parse_since(bad, NOW)


def test_checkpoint_progress_and_summary(db_url: str) -> None:
    sessions = migrated_sessions(db_url)
    with sessions.begin() as s:
        mb = repo.get_or_create_mailbox(s, "support@example.com", NOW).id
        store.start_history(s, mb, "inbox", "INBOX", 7, 1001, None, 1000, NOW)
    with sessions() as s:
        state = s.query(FolderState).one()
        assert (state.uidvalidity, state.last_uid) == (7, 1000)  # live starts at 1001
        assert store.importing_summary(s) == "importing history: 0% (0 of 1,000 messages)"
    with sessions.begin() as s:
        store.advance_history(s, mb, "inbox", 420, 420, NOW)
    with sessions() as s:
        assert store.importing_summary(s) == "importing history: 42% (420 of 1,000 messages)"
        [p] = store.history_progress(s)
        assert (p.done, p.total, p.percent, p.finished) == (420, 1000, 42, False)
    with sessions.begin() as s:  # the cursor never goes back; the last batch finishes it
        store.advance_history(s, mb, "inbox", 300, 0, NOW)
        assert store.get_history(s, mb, "inbox").cursor_uid == 420  # type: ignore[union-attr]
        store.advance_history(s, mb, "inbox", 1000, 580, NOW)
    with sessions() as s:
        assert store.importing_summary(s) is None
        [p] = store.history_progress(s)
        assert (p.done, p.percent, p.finished) == (1000, 100, True)
    with sessions.begin() as s:  # `maild import --all`: from the start again
        assert store.restart_history(s, mb, "inbox", None, 1000, NOW)
        assert not store.restart_history(s, mb, "sent", None, 5, NOW)  # no lane there
    with sessions() as s:
        assert store.importing_summary(s) == "importing history: 0% (0 of 1,000 messages)"


def test_an_empty_history_is_finished_at_once(db_url: str) -> None:
    sessions = migrated_sessions(db_url)
    with sessions.begin() as s:
        mb = repo.get_or_create_mailbox(s, "support@example.com", NOW).id
        store.start_history(s, mb, "inbox", "INBOX", 7, 50, NOW, 0, NOW)
    with sessions() as s:
        assert store.importing_summary(s) is None
        assert store.history_progress(s)[0].finished


def test_unknown_ids_keeps_order_and_drops_stored(db_url: str) -> None:
    sessions = migrated_sessions(db_url)
    with sessions.begin() as s:
        mb = repo.get_or_create_mailbox(s, "support@example.com", NOW).id
        assert store.unknown_ids(s, mb, []) == []
        assert s.scalar(select(MessageRow.id).limit(1)) is None
        assert store.unknown_ids(s, mb, ["<b@x>", "<a@x>", "<b@x>", ""]) == ["<b@x>", "<a@x>"]


def test_referenced_ids_read_in_reply_to_and_references() -> None:
    raw = (b"From: a@example.org\r\nMessage-ID: <self@x>\r\nIn-Reply-To: <p1@x>\r\n"
           b"References: <p0@x>\r\n <p1@x>\r\nSubject: Re: hi\r\n\r\nbody <not@an.id>\r\n")
    assert referenced_ids([raw, b"From: b@example.org\r\n\r\nno headers of note\r\n"]) == [
        "<p1@x>", "<p0@x>"]


def _lane() -> HistoryLane:
    ingestor = SimpleNamespace(address="support@example.com", limits=None)
    return HistoryLane(ingestor, max_age=timedelta(hours=24),  # type: ignore[arg-type]
                       pool=ParsePool(workers=1))


def test_progress_line_counts_rate_and_time_left() -> None:
    lane = _lane()
    pending = [Pending("inbox", "INBOX", 1, 10001, 4200, None, 4200, 10000)]
    assert lane.progress_line(pending) == \
        "history support@example.com: 4,200/10,000 (42%), 0 msg/s"  # no rate measured yet
    lane._rate.count = 1000
    lane._rate.started = time.monotonic() - 2.0  # 500 msg/s
    line = lane.progress_line(pending)
    assert line is not None and line.startswith(
        "history support@example.com: 4,200/10,000 (42%), 500 msg/s, about ")
    assert line.endswith("12 s left")
    assert lane.progress_line([]) == "history support@example.com: done (1,000 message(s) " \
        "this run)"
    assert lane.progress_line([]) is None  # said once


RAWS = [(f"From: Customer {i} <c{i}@example.org>\r\nTo: support@example.com\r\n"
         f"Subject: Question {i}\r\nMessage-ID: <pool-{i}@example.org>\r\n\r\n"
         "Hello, my order has not arrived yet and I would like to know where it is.\r\n"
         ).encode() for i in range(30)]


def test_pool_parses_like_parse_message_and_guesses_the_language() -> None:
    pool = ParsePool(workers=2)
    try:
        got = pool.result(pool.submit(RAWS), RAWS).parsed
    finally:
        pool.close()
    assert [p.message_id for p in got] == [f"<pool-{i}@example.org>" for i in range(30)]
    first = got[0]
    assert not isinstance(first, Exception)
    assert first.language == "en"
    assert first.subject == parse_message(RAWS[0]).subject
    inline = parse_all(RAWS[:1])[0]
    assert not isinstance(inline, Exception) and inline.language is None  # guessed later


def test_pool_falls_back_to_parsing_here_when_a_worker_dies() -> None:
    pool = ParsePool(workers=2)
    try:
        pool.result(pool.submit(RAWS[:2]), RAWS[:2])  # the workers are up
        executor = pool._pool
        assert executor is not None
        for pid in list(executor._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        future = pool.submit(RAWS)
        got = pool.result(future, RAWS).parsed
        assert [p.message_id for p in got] == [f"<pool-{i}@example.org>" for i in range(30)]
        again = pool.result(pool.submit(RAWS[:3]), RAWS[:3]).parsed  # from now on: in this process
        assert len(again) == 3 and pool.workers == 1
    finally:
        pool.close()


PARENT = r"""
import sys
from maild.parsepool import ParsePool
pool = ParsePool(workers=2)
pool.result(pool.submit([b"Subject: hi\r\n\r\nhello"] * 4), [b""] * 4)
print(" ".join(str(p) for p in pool._executor()._processes), flush=True)
sys.stdin.read()  # until killed
"""


def test_parse_workers_exit_when_maild_is_killed() -> None:
    """SIGKILL leaves the pool no chance to shut down: the workers notice their parent
    is gone and exit instead of waiting forever."""
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert workers
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), workers


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _bounce() -> bytes:
    return (b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
            b"To: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            b"Message-ID: <bounce-1@mx.example.org>\r\nAuto-Submitted: auto-replied\r\n"
            b"Content-Type: text/plain\r\n\r\nThis is the mail system. Delivery failed.\r\n")


def test_pool_routes_like_the_writer_and_skips_what_does_not_pickle() -> None:
    from functools import partial

    from maild.classify import ClassifyContext
    from maild.commands import is_command_mail
    from maild.parsepool import Routing
    from maild.routing import RouteContext, route_message

    own = frozenset({"support@example.com"})
    ctx = RouteContext(own, ClassifyContext(own_addresses=own,
                                            agent_addresses=frozenset({"c3@example.org"})),
                       partial(is_command_mail, agents={"c3@example.org": "Cara"}))
    raws = [*RAWS[:5], _bounce()]
    pool = ParsePool(workers=2)
    try:
        batch = pool.result(pool.submit(raws, Routing("inbox", ctx)), raws)
        unpicklable = RouteContext(own, ClassifyContext(own_addresses=own))  # a lambda
        plain = pool.result(pool.submit(raws, Routing("inbox", unpicklable)), raws)
    finally:
        pool.close()
    here = [route_message(parse_message(raw), "inbox", ctx, raw) for raw in raws]
    assert batch.routes == here
    assert [r.classification.sender for r in here if r] == \
        ["customer", "customer", "customer", "agent", "customer", "machine"]
    assert len(batch.parsed) == 6 and plain.routes == []  # the writer routes those


def test_history_batch_routed_by_the_workers_is_stored_as_routed_here(db_url: str) -> None:
    from maild.clock import FixedClock
    from maild.ingest import IngestItem, Ingestor
    from maild.parsepool import Routing, parse_batch

    raws = [*RAWS[:4], _bounce()]
    sessions = migrated_sessions(db_url)
    stored = []
    for mailbox, routed in (("support@example.com", True), ("help@example.com", False)):
        ing = Ingestor(sessions, FixedClock(NOW), mailbox, own_addresses=["support@example.com"])
        batch = parse_batch(raws, routing=Routing("inbox", ing.routing) if routed else None)
        assert bool(batch.routes) == routed
        items = [IngestItem(i + 1, raw, NOW - timedelta(days=9)) for i, raw in enumerate(raws)]
        ing.ingest_batch("inbox", "INBOX", 1, items, lane="prefetch", parsed=batch.parsed,
                         routes=batch.routes)
        with sessions() as s:
            stored.append(s.execute(select(MessageRow.message_id, MessageRow.sender_class,
                                           MessageRow.auto)
                                    .where(MessageRow.mailbox_id == ing.mailbox_id())
                                    .order_by(MessageRow.id)).all())
    assert stored[0] == stored[1] and len(stored[0]) == 5
    assert stored[0][-1][1:] == ("machine", True)


def test_the_writer_takes_the_workers_routes_instead_of_routing_again(db_url: str) -> None:
    from maild.clock import FixedClock
    from maild.ingest import IngestItem, Ingestor
    from maild.parsepool import Routing, parse_batch

    sessions = migrated_sessions(db_url)
    ing = Ingestor(sessions, FixedClock(NOW), "support@example.com")
    bounce_route = parse_batch([_bounce()], routing=Routing("inbox", ing.routing)).routes[0]
    batch = parse_batch(RAWS[:2])  # a customer's mail, handed over with a bounce's route
    items = [IngestItem(i + 1, raw, NOW) for i, raw in enumerate(RAWS[:2])]
    ing.ingest_batch("inbox", "INBOX", 1, items, lane="prefetch", parsed=batch.parsed,
                     routes=[bounce_route, None])
    with sessions() as s:
        got = s.execute(select(MessageRow.sender_class).order_by(MessageRow.id)).scalars().all()
    assert got == ["machine", "customer"]  # the second one routed here


def test_statistics_are_refreshed_as_history_grows(db_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk import outruns autovacuum (and a server may run without it): the planner
    then plans for empty tables. PostgreSQL's are ANALYZEd at 5,000 stored history
    messages, then each time the count has grown 4x; SQLite is left alone."""
    from sqlalchemy import text

    from maild import history as lane_module
    from maild.history import _Ahead
    from maild.ingest import BatchResult, IngestItem

    sessions = migrated_sessions(db_url)
    with sessions.begin() as session:
        assert store.refresh_statistics(session) == db_url.startswith("postgresql")
        if db_url.startswith("postgresql"):
            analyzed = session.execute(text(
                "SELECT count(*) FROM pg_class WHERE relname IN ('messages', 'tickets', "
                "'customers', 'events') AND relnamespace = "
                "(SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
                "AND reltuples >= 0")).scalar_one()
            assert analyzed == 4  # -1 until a table was analyzed

    calls: list[int] = []
    monkeypatch.setattr(lane_module.store, "refresh_statistics",
                        lambda session: calls.append(1) or True)
    ingestor = SimpleNamespace(
        address="support@example.com", sessions=sessions,
        ingest_batch=lambda *a, **k: BatchResult(stored=len(a[3])))
    pool = SimpleNamespace(result=lambda future, raws: SimpleNamespace(parsed=[], routes=[]))
    lane = HistoryLane(ingestor, max_age=timedelta(hours=1), pool=pool)  # type: ignore[arg-type]
    p = Pending("inbox", "INBOX", 1, 10**6, 0, None, 0, 10**6)
    stored_at_refresh = []
    for n in range(1, 110):
        items = [IngestItem(i, b"", None) for i in range(1000)]
        lane._store(p, _Ahead(1, items, n * 1000, None))  # type: ignore[arg-type]
        if len(calls) > len(stored_at_refresh):
            stored_at_refresh.append(n * 1000)
    assert stored_at_refresh == [5000, 20000, 80000]
