"""SLA clock: due/warn times in business time, one warning and one breach per
ticket, pending pauses the clock, auto-solve of stale pending tickets."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from maild.calendar import BusinessCalendar
from maild.clock import FixedClock
from maild.ingest import IngestItem, Ingestor
from maild.sla import auto_solve_pending, check_sla, set_status, start_clock
from maild.store.models import Event, Ticket
from tests.builders import migrated_sessions, raw_mail, utc

CAL = BusinessCalendar("Europe/Istanbul", "Mon-Fri 09:00-18:00", "TR")


def world(db_url: str) -> tuple[sessionmaker[Session], Ingestor]:
    sessions = migrated_sessions(db_url)
    ing = Ingestor(sessions, FixedClock(utc(2026, 11, 6, 12)), "support@example.com",
                   calendar=CAL)
    # Friday 2026-11-06 15:00 Istanbul (12:00 UTC)
    ing.ingest_batch("inbox", "INBOX", 1, [IngestItem(1, raw_mail(), utc(2026, 11, 6, 12))])
    with sessions.begin() as s:
        start_clock(s.get_one(Ticket, 1), CAL, timedelta(hours=4), utc(2026, 11, 6, 12), 0.8)
    return sessions, ing


def kinds(s: Session) -> list[str]:
    return [e.kind for e in s.query(Event).order_by(Event.id)]


def test_due_and_warning_in_business_time(db_url: str) -> None:
    sessions, _ = world(db_url)
    with sessions() as s:
        t = s.get_one(Ticket, 1)
        # 3 business hours left on Friday (15:00-18:00), 1 h on Monday: 10:00 local.
        assert t.sla_due_at == utc(2026, 11, 9, 7)
        # 80 % of 4 h = 3h12m: Friday's 3 h, then 12 min on Monday: 09:12 local.
        assert t.sla_warn_at == utc(2026, 11, 9, 6, 12)


def test_warning_then_breach_recorded_once(db_url: str) -> None:
    sessions, _ = world(db_url)
    with sessions.begin() as s:
        assert check_sla(s, utc(2026, 11, 9, 6, 0)).warned == []
        assert check_sla(s, utc(2026, 11, 9, 6, 12)).warned == [1]
        assert check_sla(s, utc(2026, 11, 9, 6, 30)).warned == []
        assert check_sla(s, utc(2026, 11, 9, 7, 0)).breached == [1]
        assert check_sla(s, utc(2026, 11, 9, 8, 0)).breached == []
        assert kinds(s).count("sla_warning") == 1 and kinds(s).count("sla_breach") == 1
        assert s.get_one(Ticket, 1).sla_breached is True


def test_answered_ticket_never_breaches(db_url: str) -> None:
    sessions, _ = world(db_url)
    with sessions.begin() as s:
        s.get_one(Ticket, 1).first_response_at = utc(2026, 11, 6, 13)
        report = check_sla(s, utc(2026, 11, 10))
    assert report.warned == [] and report.breached == []


def test_pending_pauses_the_clock(db_url: str) -> None:
    sessions, _ = world(db_url)
    with sessions.begin() as s:
        t = s.get_one(Ticket, 1)
        # Pending at Friday 16:00 local: 3 business hours left (Fri 16-18, Mon 09-10).
        # Resumed Tuesday 10:00 local, so due Tuesday 13:00 local = 10:00 UTC.
        set_status(s, t, "pending", utc(2026, 11, 6, 13), calendar=CAL)
        assert check_sla(s, utc(2026, 11, 9, 8)).breached == []  # paused: no breach
        set_status(s, t, "open", utc(2026, 11, 10, 7), calendar=CAL)
        assert t.sla_due_at == utc(2026, 11, 10, 10)
        assert "sla_resumed" in kinds(s)


def test_customer_reply_resumes_and_reopens(db_url: str) -> None:
    sessions, ing = world(db_url)
    with sessions.begin() as s:
        set_status(s, s.get_one(Ticket, 1), "pending", utc(2026, 11, 6, 13), calendar=CAL)
    reply = raw_mail(msgid="<m2@example.org>", subject="Re: Order missing",
                     in_reply_to="<m1@example.org>")
    ing.ingest_batch("inbox", "INBOX", 1, [IngestItem(2, reply, utc(2026, 11, 10, 7))])
    with sessions() as s:
        t = s.get_one(Ticket, 1)
        assert t.status == "open" and t.sla_due_at == utc(2026, 11, 10, 10)


def test_auto_solve_pending_without_reply(db_url: str) -> None:
    sessions, _ = world(db_url)
    with sessions.begin() as s:
        set_status(s, s.get_one(Ticket, 1), "pending", utc(2026, 11, 6, 13))
        assert auto_solve_pending(s, utc(2026, 11, 12), 7) == []
        assert auto_solve_pending(s, utc(2026, 11, 13, 14), 7) == [1]
        t = s.get_one(Ticket, 1)
        assert t.status == "solved" and t.solved_at == utc(2026, 11, 13, 14)
        assert "auto_solved" in kinds(s)


def many_due(sessions: sessionmaker[Session], count: int) -> None:
    """`count` more unanswered tickets like ticket 1, due one minute apart (some with
    microseconds, which the breach event's detail must keep)."""
    with sessions.begin() as s:
        first = s.get_one(Ticket, 1)
        for i in range(count):
            due = utc(2026, 11, 9, 7) + timedelta(minutes=i, microseconds=i * 1001 % 7)
            s.add(Ticket(mailbox_id=first.mailbox_id, customer_id=first.customer_id,
                         subject=f"Help {i}", normalized_subject=f"help {i}", status="new",
                         priority="normal", tags=[], sla_due_at=due, sla_warn_at=due,
                         created_at=first.created_at, updated_at=first.created_at,
                         agent_replies=0, sla_breached=False, suggestions=[]))


def test_many_breaches_at_once_one_summary_line(db_url: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    sessions, _ = world(db_url)
    many_due(sessions, 24)
    caplog.set_level(logging.INFO, logger="maild.sla")
    with sessions.begin() as s:
        report = check_sla(s, utc(2026, 11, 10))
        assert report.breached == list(range(1, 26)) and report.warned == []
        events = s.query(Event).filter(Event.kind == "sla_breach").order_by(Event.ticket_id)
        assert [(e.ticket_id, e.at, e.actor) for e in events] == [
            (tid, utc(2026, 11, 10), "maild") for tid in range(1, 26)]
        dues = {t.id: t.sla_due_at for t in s.query(Ticket)}
        assert all(dues[e.ticket_id] is not None and e.detail == {
            "due_at": dues[e.ticket_id].isoformat()} for e in events)  # type: ignore[union-attr]
        assert all(t.sla_breached for t in s.query(Ticket))
    assert [r.getMessage() for r in caplog.records if r.name == "maild.sla"] == [
        "25 tickets breached their SLA (ids " + ", ".join(map(str, range(1, 21))) + ", ...)"]


def test_many_breaches_are_flagged_in_chunks(db_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """More overdue tickets than one statement flags (a first run's history past due):
    every one is flagged once, with one event each, chunk after chunk."""
    import maild.sla

    monkeypatch.setattr(maild.sla, "RECORD_CHUNK", 4)
    sessions, _ = world(db_url)
    many_due(sessions, 10)  # 11 due: chunks of 4, 4, 3
    with sessions.begin() as s:
        report = check_sla(s, utc(2026, 11, 10))
        assert report.breached == list(range(1, 12))
        assert sorted(e.ticket_id for e in s.query(Event).filter(
            Event.kind == "sla_breach")) == list(range(1, 12))
        assert check_sla(s, utc(2026, 11, 10, 1)).breached == []


def test_few_breaches_one_line_each(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    sessions, _ = world(db_url)
    many_due(sessions, 1)
    caplog.set_level(logging.WARNING, logger="maild.sla")
    with sessions.begin() as s:
        assert check_sla(s, utc(2026, 11, 10)).breached == [1, 2]
    assert [r.getMessage() for r in caplog.records if r.name == "maild.sla"] == [
        "ticket #1: SLA breached (due 2026-11-09T07:00:00+00:00, no agent reply)",
        "ticket #2: SLA breached (due 2026-11-09T07:00:00+00:00, no agent reply)"]


def test_two_instances_never_record_an_event_twice(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several instances need PostgreSQL (SQLite runs one)")
    sessions, _ = world(db_url)
    many_due(sessions, 30)
    now = utc(2026, 11, 10)
    with sessions.begin() as first, sessions.begin() as second:
        assert len(check_sla(first, now).breached) == 31  # holds the rows' locks
        assert check_sla(second, now).breached == []  # skips them, does not wait
    with sessions.begin() as third:  # both committed: nothing left to record
        assert check_sla(third, now).breached == []
        assert kinds(third).count("sla_breach") == 31
