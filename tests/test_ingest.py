"""Ingest pipeline against a real database (SQLite and PostgreSQL), no IMAP."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.calendar import BusinessCalendar
from maild.clock import FixedClock
from maild.ingest import IngestItem, Ingestor
from maild.report.kpi import compute_stats
from maild.store import repo
from maild.store.models import Event, Mailbox, MessageRow, Quarantine, Ticket
from maild.views import list_tickets, show_ticket
from tests.builders import migrated_sessions, raw_mail, utc


def make(db_url: str, **kw: object) -> Ingestor:
    return Ingestor(migrated_sessions(db_url), FixedClock(utc(2026, 11, 2, 12)),
                    "support@example.com", **kw)  # type: ignore[arg-type]


def items(*raws: bytes, start: int = 1) -> list[IngestItem]:
    return [IngestItem(start + i, raw, utc(2026, 11, 2, 10, i)) for i, raw in enumerate(raws)]


def tickets(ing: Ingestor) -> list[dict]:
    with ing.sessions() as s:
        return list_tickets(s)


def test_reply_joins_and_agent_reply_sets_first_response(db_url: str) -> None:
    ing = make(db_url)
    first = raw_mail()
    reply = raw_mail(msgid="<m2@example.org>", subject="Re: Order missing",
                     in_reply_to="<m1@example.org>")
    res = ing.ingest_batch("inbox", "INBOX", 7, items(first, reply))
    assert (res.stored, res.new_tickets, res.last_uid) == (2, 1, 2)
    agent = raw_mail(frm="Support <support@example.com>", to="ann@example.org",
                     subject="Re: Order missing [#1]", msgid="<a1@example.com>",
                     date="Mon, 02 Nov 2026 10:30:00 +0000")
    ing.ingest_batch("sent", "Sent", 9, items(agent))
    [t] = tickets(ing)
    assert t["message_count"] == 3 and t["agent_replies"] == 1
    assert t["first_response_at"] == "2026-11-02T10:30:00Z"
    assert t["status"] == "open" and t["customer"] == "ann@example.org"


def test_second_run_is_idempotent_and_checkpoint_advances(db_url: str) -> None:
    ing = make(db_url)
    batch = items(raw_mail(), raw_mail(msgid="<other@x>", subject="Another"))
    ing.ingest_batch("inbox", "INBOX", 7, batch)
    again = ing.ingest_batch("inbox", "INBOX", 7, batch)
    assert (again.stored, again.duplicates) == (0, 2)
    state = ing.checkpoint("inbox")
    assert state is not None and (state.uidvalidity, state.last_uid) == (7, 2)
    assert len(tickets(ing)) == 2


def test_uidvalidity_change_resets_checkpoint_without_duplicates(db_url: str) -> None:
    ing = make(db_url)
    ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail(), start=40))
    ing.ingest_batch("inbox", "INBOX", 8, items(raw_mail(), start=1))
    state = ing.checkpoint("inbox")
    assert state is not None and (state.uidvalidity, state.last_uid) == (8, 1)
    assert len(tickets(ing)) == 1


class Exploding:
    name = "exploding"

    def __init__(self, bad_subject: str) -> None:
        self.bad = bad_subject

    def handle(self, session: object, stored: object, parsed: object) -> None:
        if getattr(parsed, "subject", "") == self.bad:
            raise RuntimeError("handler bug")


def test_failing_message_is_quarantined_and_batch_goes_on(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The batch is first stored without savepoints; the failure rolls that attempt
    back whole and the batch is stored again message by message: the message before
    the failure is stored once, with one `opened` event, not twice."""
    ing = make(db_url, handlers=[Exploding("boom")])
    res = ing.ingest_batch("inbox", "INBOX", 7, items(
        raw_mail(msgid="<a@x>", subject="fine"), raw_mail(msgid="<b@x>", subject="boom"),
        raw_mail(msgid="<c@x>", subject="also fine")))
    assert (res.stored, res.quarantined, res.last_uid) == (2, 1, 3)
    with ing.sessions() as s:
        q = s.scalars(select(Quarantine)).all()
        assert [(r.uid, r.error) for r in q] == [(2, "RuntimeError: handler bug")]
        assert s.scalar(select(func.count(MessageRow.id))) == 2
        assert s.scalar(select(func.count(Ticket.id))) == 2
        assert s.scalar(select(func.count(Event.id)).where(Event.kind == "opened")) == 2
    assert "batch of 3 rolled back, storing it again message by message" in caplog.text


def test_unparseable_message_is_stored_flagged(db_url: str) -> None:
    ing = make(db_url)
    broken = (b"From: x@example.org\r\nSubject: broken\r\nContent-Type: multipart/mixed; "
              b"boundary=\"zz\"\r\nMessage-ID: <br@x>\r\n\r\n--zz\r\nContent-Type: text/plain;"
              b" charset=nonexistent-charset\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              b"%%%not base64\x00\xff\r\n")
    res = ing.ingest_batch("inbox", "INBOX", 7, items(broken))
    assert res.stored == 1
    with ing.sessions() as s:
        shown = show_ticket(s, 1)
    assert shown["messages"][0]["from"] == "x@example.org"
    assert "\x00" not in shown["messages"][0]["text"]


def test_solved_ticket_reopens_on_customer_reply(db_url: str) -> None:
    ing = make(db_url)
    ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail()))
    with ing.sessions.begin() as s:
        s.get_one(Ticket, 1).status = "solved"
    reply = raw_mail(msgid="<m2@example.org>", subject="Re: Order missing",
                     references="<m1@example.org>")
    ing.ingest_batch("inbox", "INBOX", 7, items(reply, start=2))
    with ing.sessions() as s:
        shown = show_ticket(s, 1)
    assert shown["status"] == "open"
    assert "reopened" in [e["kind"] for e in shown["events"]]


@pytest.mark.parametrize("subject,expect_new", [
    ("Re: Order missing", False), ("Fwd: Order missing", True), ("Something else", True)])
def test_subject_fallback(db_url: str, subject: str, expect_new: bool) -> None:
    ing = make(db_url)
    ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail()))
    res = ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail(
        msgid="<z@example.org>", subject=subject), start=2))
    assert res.new_tickets == int(expect_new)


def test_guessed_tag_from_stranger_opens_new_ticket(db_url: str) -> None:
    ing = make(db_url)
    ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail()))
    res = ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail(
        frm="mallory@evil.example", msgid="<e@x>", subject="Re: hi [#1]"), start=2))
    assert res.new_tickets == 1


def _ids(rows: Sequence[dict]) -> list[int]:
    return [r["id"] for r in rows]


def test_reply_long_after_solve_opens_new_ticket(db_url: str) -> None:
    ing = make(db_url, reopen_window_days=7)
    ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail()))
    with ing.sessions.begin() as s:
        t = s.get_one(Ticket, 1)
        t.status, t.solved_at = "solved", utc(2026, 11, 2, 11)
    late = raw_mail(msgid="<late@example.org>", subject="Re: Order missing",
                    in_reply_to="<m1@example.org>")
    res = ing.ingest_batch("inbox", "INBOX", 7, [IngestItem(2, late, utc(2026, 11, 12))])
    assert res.new_tickets == 1
    soon = raw_mail(msgid="<soon@example.org>", subject="Re: Order missing",
                    in_reply_to="<m1@example.org>")
    with ing.sessions.begin() as s:
        t = s.get_one(Ticket, 1)
        t.status, t.solved_at = "solved", utc(2026, 11, 11)
    res = ing.ingest_batch("inbox", "INBOX", 7, [IngestItem(3, soon, utc(2026, 11, 12))])
    assert res.new_tickets == 0
    with ing.sessions() as s:
        assert s.get_one(Ticket, 1).status == "open"


def test_first_response_figures_recorded_with_the_reply(db_url: str) -> None:
    """FRT is recorded when the first response is stored (business time with the SLA
    calendar); older customer mail stored after it clears them so stats recomputes."""
    cal = BusinessCalendar("UTC", "Mon-Fri 09:00-18:00", None)
    ing = make(db_url, calendar=cal)
    ing.ingest_batch("inbox", "INBOX", 7, items(raw_mail()))  # Mon 2 Nov 10:00 UTC
    agent = raw_mail(frm="Bob Agent <support@example.com>", to="ann@example.org",
                     subject="Re: Order missing [#1]", msgid="<a1@example.com>",
                     date="Mon, 02 Nov 2026 11:30:00 +0000")
    ing.ingest_batch("sent", "Sent", 9, items(agent))
    with ing.sessions() as s:
        t = s.scalars(select(Ticket)).one()
        assert (t.frt_wall_seconds, t.frt_business_seconds, t.first_responder) == \
            (5400.0, 5400.0, "Bob Agent")
    late = raw_mail(msgid="<m0@example.org>", subject="Re: Order missing [#1]")
    ing.ingest_batch("inbox", "INBOX", 7, [IngestItem(2, late, utc(2026, 11, 2, 9))])
    with ing.sessions() as s:
        t = s.scalars(select(Ticket)).one()
        assert (t.frt_wall_seconds, t.frt_business_seconds) == (None, None)
        stats = compute_stats(s, cal, utc(2026, 11, 2), utc(2026, 11, 3), utc(2026, 11, 3))
    assert stats["frt_wall_seconds"]["median"] == 9000  # from 09:00 now


def test_mailbox_row_created_meanwhile_is_read_not_duplicated(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At a first start the poller and a scheduler job both create the mailbox row; the
    one that loses the race reads the other's row instead of failing its batch or job."""
    sessions = migrated_sessions(db_url)
    with sessions() as s:
        looked = s.scalar

        def look_then_lose_the_race(*args: object, **kw: object) -> object:
            found = looked(*args, **kw)  # type: ignore[arg-type]
            with sessions.begin() as other:  # the other job creates it now
                other.add(Mailbox(address="support@example.com", created_at=utc(2026, 11, 2)))
            return found

        monkeypatch.setattr(s, "scalar", look_then_lose_the_race)
        mailbox = repo.get_or_create_mailbox(s, "Support@example.com", utc(2026, 11, 2))
        s.commit()
        assert mailbox.address == "support@example.com"
    with sessions() as s:
        assert s.scalar(select(func.count(Mailbox.id))) == 1


class BadRow:
    """Adds a row the database refuses (an event for a ticket that does not exist): it
    fails only when flushed, which may be long after the handler returned."""

    name = "bad-row"

    def __init__(self, bad_subject: str) -> None:
        self.bad = bad_subject

    def handle(self, session: Session, stored: object, parsed: object) -> None:
        if getattr(parsed, "subject", "") == self.bad:
            repo.add_event(session, 999_999_999, utc(2026, 11, 2, 12), "note")


@pytest.mark.parametrize("position", ["middle", "last"])
def test_row_refused_at_flush_quarantines_its_message_not_the_batch(
        db_url: str, position: str) -> None:
    """Without savepoints a batch's rows are flushed together, so a refused row surfaces
    at a later query or at the batch's last flush: the batch is stored again message by
    message, and only the message whose row was refused is quarantined."""
    ing = make(db_url, handlers=[BadRow("refused")])
    subjects = ["one", "refused", "three"] if position == "middle" else \
        ["one", "two", "refused"]
    res = ing.ingest_batch("inbox", "INBOX", 7, items(*(
        raw_mail(frm=f"c{i}@example.net", msgid=f"<r{i}@x>", subject=subject)
        for i, subject in enumerate(subjects))))
    assert (res.stored, res.quarantined, res.last_uid) == (2, 1, 3)
    bad_uid = subjects.index("refused") + 1
    with ing.sessions() as s:
        assert [r.uid for r in s.scalars(select(Quarantine))] == [bad_uid]
        assert s.scalar(select(func.count(MessageRow.id))) == 2
    state = ing.checkpoint("inbox")
    assert state is not None and state.last_uid == 3
