"""Outbox semantics with an injected sender: retry, backoff, give up, stale claims."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from maild.clock import FixedClock
from maild.compose import compose
from maild.errors import SendError
from maild.ingest import IngestItem, Ingestor
from maild.outbox import OutboxSender, RetryPolicy, enqueue
from maild.sending import Refusal, SendResult
from maild.store.models import OutboxRow
from maild.views import show_ticket
from tests.builders import migrated_sessions, raw_mail, utc


class FakeSmtp:
    def __init__(self, failures: Sequence[SendError] = ()) -> None:
        self.failures = list(failures)
        self.sent: list[bytes] = []

    def __call__(self, raw: bytes, sender: str, rcpts: Sequence[str]) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(raw)
        return "250 ok"


@pytest.fixture
def world(db_url: str):  # type: ignore[no-untyped-def]
    clock = FixedClock(utc(2026, 11, 2, 10))
    sessions = migrated_sessions(db_url)
    ing = Ingestor(sessions, clock, "support@example.com")
    ing.ingest_batch("inbox", "INBOX", 1, [IngestItem(1, raw_mail(), utc(2026, 11, 2, 10))])
    out = compose(sender="support@example.com", sender_name="Support", to="ann@example.org",
                  to_name="Ann", subject="Re: Order missing [#1]", body="We are on it.",
                  date=clock.now(), ticket_id=1, in_reply_to="<m1@example.org>",
                  references=["<m1@example.org>"])
    with sessions.begin() as s:
        enqueue(s, out, mailbox_id=1, ticket_id=1, kind="auto_reply", now=clock.now())
    return sessions, clock, out


def sender(world, smtp: FakeSmtp, **kw) -> OutboxSender:  # type: ignore[no-untyped-def]
    sessions, clock, _ = world
    return OutboxSender(sessions, clock, smtp, own_addresses=["support@example.com"],
                        policy=RetryPolicy(**kw))


def test_sent_once_and_recorded_on_ticket_as_auto(world) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    smtp = FakeSmtp()
    s = sender(world, smtp)
    assert s.deliver_due().sent == [out.message_id]
    assert s.deliver_due().sent == []
    assert len(smtp.sent) == 1
    with sessions() as ses:
        t = show_ticket(ses, 1)
    auto = [m for m in t["messages"] if m["message_id"] == out.message_id]
    assert auto and auto[0]["auto"] is True and auto[0]["direction"] == "out"
    assert t["agent_replies"] == 0 and t["first_response_at"] is None
    assert t["message_count"] == 1  # auto mail is not a customer/agent message


def test_temporary_failure_backs_off_then_delivers(world) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    smtp = FakeSmtp([SendError("451 try later"), SendError("451 again")])
    s = sender(world, smtp)
    assert s.deliver_due().retry == [out.message_id]
    assert s.deliver_due().sent == []  # not due yet: backoff 1 min
    clock.set(clock.now() + timedelta(minutes=1))
    assert s.deliver_due().retry == [out.message_id]
    clock.set(clock.now() + timedelta(minutes=1))
    assert s.deliver_due().sent == []  # second backoff is 2 min
    clock.set(clock.now() + timedelta(minutes=1))
    assert s.deliver_due().sent == [out.message_id]
    assert len(smtp.sent) == 1


def test_permanent_failure_marks_failed_with_event(world) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    s = sender(world, FakeSmtp([SendError("554 rejected", permanent=True)]))
    assert s.deliver_due().failed == [out.message_id]
    with sessions() as ses:
        row = ses.scalars(select(OutboxRow)).one()
        assert row.status == "failed" and "554" in (row.last_error or "")
        kinds = [e["kind"] for e in show_ticket(ses, 1)["events"]]
    assert "auto_reply_failed" in kinds


def test_gives_up_after_max_attempts(world) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    s = sender(world, FakeSmtp([SendError("451")] * 5), max_attempts=3)
    for _ in range(3):
        s.deliver_due()
        clock.set(clock.now() + timedelta(hours=2))
    with sessions() as ses:
        row = ses.scalars(select(OutboxRow)).one()
    assert (row.status, row.attempts) == ("failed", 3)


def test_crash_after_claim_resends_same_message_id(world) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    s = sender(world, FakeSmtp())
    assert s._claim() is not None  # claimed, then the process "dies" before sending
    assert s.deliver_due().sent == []  # claim is fresh: nobody else takes it
    clock.set(clock.now() + timedelta(minutes=11))
    smtp = FakeSmtp()
    assert sender(world, smtp).deliver_due().sent == [out.message_id]
    assert out.message_id.encode() in smtp.sent[0]


# --- a mark the database refuses: bounded, never re-sent forever ------------------------

SQLITE_REFUSE_MARK = """CREATE TRIGGER refuse_mark BEFORE UPDATE OF status ON outbox
WHEN NEW.status = 'sent' BEGIN SELECT RAISE(ABORT, 'mark refused'); END"""
PG_REFUSE_MARK = (
    """CREATE FUNCTION refuse_mark() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.status = 'sent' THEN RAISE EXCEPTION 'mark refused'; END IF;
    RETURN NEW; END $$""",
    """CREATE TRIGGER refuse_mark BEFORE UPDATE ON outbox FOR EACH ROW
    EXECUTE FUNCTION refuse_mark()""")


def refuse_the_mark(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        if s.get_bind().dialect.name == "sqlite":
            s.execute(text(SQLITE_REFUSE_MARK))
        else:
            for statement in PG_REFUSE_MARK:
                s.execute(text(statement))


def test_a_mark_the_database_refuses_is_held_after_max_attempts(world, caplog) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    refuse_the_mark(sessions)
    smtp = FakeSmtp()
    s = sender(world, smtp, max_attempts=3)
    for attempt in range(1, 4):  # sent, the mark refused, the claim goes stale: sent again
        with pytest.raises(DBAPIError, match="mark refused"):
            s.deliver_due()
        assert len(smtp.sent) == attempt
        clock.set(clock.now() + timedelta(minutes=11))
    with caplog.at_level(logging.ERROR, logger="maild.outbox"):
        assert s.deliver_due().held == [out.message_id]
    for _ in range(3):  # never again, however long it waits
        clock.set(clock.now() + timedelta(hours=2))
        report = s.deliver_due()
        assert (report.sent, report.retry, report.failed, report.held) == ([], [], [], [])
    assert len(smtp.sent) == 3
    with sessions() as ses:
        row = ses.scalars(select(OutboxRow)).one()
        kinds = [e["kind"] for e in show_ticket(ses, 1)["events"]]
    assert (row.status, row.attempts) == ("held", 3)
    assert "auto_reply_held" in kinds and "auto_reply_sent" not in kinds
    assert f"({out.message_id}) HELD after 3 attempt(s)" in caplog.text


def test_a_claim_gone_stale_before_max_attempts_is_sent_again(world) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    s = sender(world, FakeSmtp(), max_attempts=2)
    assert s._claim() is not None  # one claim, then the process "dies"
    clock.set(clock.now() + timedelta(minutes=11))
    assert s.deliver_due().sent == [out.message_id]


# --- refusals and lost connections -------------------------------------------------------


class Partial:
    """Takes every message but refuses `refused` (as a server does at RCPT)."""

    def __init__(self, *refused: Refusal) -> None:
        self.refused = refused
        self.sent: list[Sequence[str]] = []

    def __call__(self, raw: bytes, sender: str, rcpts: Sequence[str]) -> SendResult:
        self.sent.append(rcpts)
        return SendResult("250 ok", self.refused)


def test_a_partial_refusal_is_sent_and_records_the_refused_address(world) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    smtp = Partial(Refusal("ann@example.org", 550, "5.1.1 user unknown"))
    assert sender(world, smtp).deliver_due().sent == [out.message_id]
    with sessions() as ses:
        row = ses.scalars(select(OutboxRow)).one()
        events = show_ticket(ses, 1)["events"]
    assert row.status == "sent" and "5.1.1 user unknown" in (row.last_error or "")
    [failed] = [e for e in events if e["kind"] == "delivery_failed"]
    assert (failed["address"], failed["status"]) == ("ann@example.org", "5.1.1")
    assert failed["diagnostic"] == "550 5.1.1 user unknown"


def test_a_lost_connection_ends_the_batch_and_leaves_the_rest_queued(world) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    second = compose(sender="support@example.com", sender_name="Support", to="bo@example.org",
                     to_name="Bo", subject="Re: x [#1]", body="b", date=clock.now(), ticket_id=1)
    with sessions.begin() as s:
        enqueue(s, second, mailbox_id=1, ticket_id=1, kind="auto_reply", now=clock.now())
    smtp = FakeSmtp([SendError("connection reset", connection_lost=True)])
    report = sender(world, smtp).deliver_due()
    assert (report.retry, report.sent) == ([out.message_id], [])
    with sessions() as ses:
        rows = {r.message_id: (r.status, r.attempts) for r in ses.scalars(select(OutboxRow))}
    assert rows == {out.message_id: ("queued", 1), second.message_id: ("queued", 0)}
    assert sender(world, smtp).deliver_due().sent == [second.message_id]  # the next run


def test_a_queued_row_past_max_attempts_fails_instead_of_waiting_forever(world) -> None:  # type: ignore[no-untyped-def]
    sessions, clock, out = world
    with sessions.begin() as s:  # tried 5 times under a config that allowed more
        s.execute(update(OutboxRow).values(attempts=5))
    smtp = FakeSmtp()
    assert sender(world, smtp, max_attempts=3).deliver_due().failed == [out.message_id]
    with sessions() as ses:
        row = ses.scalars(select(OutboxRow)).one()
        kinds = [e["kind"] for e in show_ticket(ses, 1)["events"]]
    assert row.status == "failed" and smtp.sent == [] and "auto_reply_failed" in kinds
