"""SLA clock: due/warn times in business time, one warning and one breach per
ticket, pending pauses the clock, auto-solve of stale pending tickets."""

from __future__ import annotations

from datetime import timedelta

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
