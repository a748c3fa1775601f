"""Refusals at every stage of an SMTP transaction, against the aiosmtpd sink and the real
aiosmtplib client: MAIL FROM, RCPT (every recipient, or some) and DATA, each with 4xx and
5xx. 5xx for everyone is permanent and recorded as `delivery_failed` on the ticket; 4xx is
retried; a partial refusal is sent to the others. One connection serves a batch, and a
refusal of one message does not fail the others."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devstack.smtpsink import SmtpSink
from maild.app import build_app
from maild.clock import FixedClock
from maild.compose import compose
from maild.config import load_config
from maild.errors import SendError
from maild.ingest import IngestItem, Ingestor
from maild.outbox import OutboxSender, enqueue
from maild.replying import Agent, prepare_reply, send_reply
from maild.smtp import REFUSED, SmtpSettings, connection, send
from maild.store.db import upgrade
from maild.store.models import OutboxRow
from maild.views import show_ticket
from tests.builders import migrated_sessions, raw_mail, utc
from tests.test_replying import PASSWORD, ingest, write_config

pytestmark = pytest.mark.integration
RAW = b"From: s@example.com\r\nTo: x@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
SUPPORT = "support@example.com"
ANN, BO = "ann@example.org", "bo@example.org"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


def settings(sink: SmtpSink) -> SmtpSettings:
    return SmtpSettings("127.0.0.1", sink.port, "none", timeout=10)


def refuse(sink: SmtpSink, stage: str, code: int) -> None:
    text = f"{code // 100}.1.1 {stage} says no"
    if stage == "mail":
        sink.refuse_mail(code, text)
    elif stage == "rcpt":
        sink.refuse_rcpt(ANN, code, text)
        sink.refuse_rcpt(BO, code, text)
    else:
        sink.fail_next(code, text)


# --- the client: what each refusal becomes --------------------------------------------------


@pytest.mark.parametrize("code", [451, 550])
@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_a_refusal_for_everyone(sink: SmtpSink, stage: str, code: int) -> None:
    refuse(sink, stage, code)
    with pytest.raises(SendError) as err:
        send(settings(sink), RAW, SUPPORT, [ANN, BO])
    error = err.value
    assert error.permanent is (code >= 500) and not error.connection_lost
    assert error.reason == (REFUSED if code >= 500 else None)
    assert sorted(r.address for r in error.refused) == [ANN, BO]
    assert {(r.code, r.status) for r in error.refused} == {(code, f"{code // 100}.1.1")}
    assert sink.messages == []
    send(settings(sink), RAW, SUPPORT, [ANN])  # the sink is fine again: the next one goes
    assert [m.rcpt_tos for m in sink.messages] == [(ANN,)]


@pytest.mark.parametrize("code", [451, 550])
def test_a_partial_refusal_is_sent_to_the_others(sink: SmtpSink, code: int) -> None:
    sink.refuse_rcpt(BO, code, "5.1.1 user unknown")
    result = send(settings(sink), RAW, SUPPORT, [ANN, BO])
    assert [m.rcpt_tos for m in sink.messages] == [(ANN,)]
    assert [(r.address, r.code, r.message) for r in result.refused] == [
        (BO, code, "5.1.1 user unknown")]


def test_one_connection_for_a_batch_and_a_refusal_fails_only_its_message(
        sink: SmtpSink) -> None:
    sink.refuse_rcpt(BO, 550, "5.1.1 user unknown")
    with connection(settings(sink)) as conn_send:
        conn_send(RAW, SUPPORT, [ANN])
        with pytest.raises(SendError, match="refused at RCPT"):
            conn_send(RAW, SUPPORT, [BO])
        conn_send(RAW, SUPPORT, [ANN])
    assert len(sink.messages) == 2 and sink.connections == 1


# --- the outbox: what each refusal leaves on the ticket ------------------------------------


def world(tmp_path: Path) -> tuple[sessionmaker[Session], FixedClock]:
    clock = FixedClock(utc(2026, 11, 2, 10))
    sessions = migrated_sessions(f"sqlite:///{tmp_path / 'maild.db'}")
    Ingestor(sessions, clock, SUPPORT).ingest_batch(
        "inbox", "INBOX", 1, [IngestItem(1, raw_mail(), utc(2026, 11, 2, 10))])
    return sessions, clock


def queue(sessions: sessionmaker[Session], clock: FixedClock, *to: str, subject: str = "x"
          ) -> str:
    out = compose(sender=SUPPORT, sender_name="Support", to=to[0], to_name="",
                  subject=f"Re: {subject} [#1]", body="We are on it.", date=clock.now(),
                  ticket_id=1, in_reply_to="<m1@example.org>", references=["<m1@example.org>"])
    out = dataclasses.replace(out, recipients=tuple(to))
    with sessions.begin() as s:
        enqueue(s, out, mailbox_id=1, ticket_id=1, kind="auto_reply", now=clock.now())
    return out.message_id


def outbox_sender(sessions: sessionmaker[Session], clock: FixedClock,
                  sink: SmtpSink) -> OutboxSender:
    return OutboxSender(sessions, clock, partial(send, settings(sink)),
                        connect=partial(connection, settings(sink)), own_addresses=[SUPPORT])


def ticket_events(sessions: sessionmaker[Session], kind: str) -> list[dict[str, Any]]:
    with sessions() as s:
        return [e for e in show_ticket(s, 1)["events"] if e["kind"] == kind]


@pytest.mark.parametrize("code", [451, 550])
@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_outbox_records_a_refusal(sink: SmtpSink, tmp_path: Path, stage: str,
                                  code: int) -> None:
    sessions, clock = world(tmp_path)
    mid = queue(sessions, clock, ANN)
    refuse(sink, stage, code)
    report = outbox_sender(sessions, clock, sink).deliver_due()
    failed = ticket_events(sessions, "delivery_failed")
    if code >= 500:
        assert report.failed == [mid] and sink.messages == []
        assert [(e["address"], e["status"]) for e in failed] == [(ANN, "5.1.1")]
        assert ticket_events(sessions, "auto_reply_failed")
        return
    assert report.retry == [mid] and failed == []
    clock.set(clock.now() + timedelta(minutes=2))
    assert outbox_sender(sessions, clock, sink).deliver_due().sent == [mid]
    assert [m.rcpt_tos for m in sink.messages] == [(ANN,)]


def test_outbox_partial_refusal_sends_to_the_others(sink: SmtpSink, tmp_path: Path) -> None:
    sessions, clock = world(tmp_path)
    mid = queue(sessions, clock, ANN, BO)
    sink.refuse_rcpt(BO, 550, "5.1.1 user unknown")
    assert outbox_sender(sessions, clock, sink).deliver_due().sent == [mid]
    assert [m.rcpt_tos for m in sink.messages] == [(ANN,)]
    [failed] = ticket_events(sessions, "delivery_failed")
    assert (failed["address"], failed["status"]) == (BO, "5.1.1")
    clock.set(clock.now() + timedelta(hours=3))  # and it is not sent again
    assert outbox_sender(sessions, clock, sink).deliver_due().sent == []
    assert len(sink.messages) == 1


def test_outbox_batch_one_connection_one_refusal(sink: SmtpSink, tmp_path: Path) -> None:
    sessions, clock = world(tmp_path)
    mids = [queue(sessions, clock, to, subject=f"n{i}")
            for i, to in enumerate([ANN, BO, ANN, ANN])]
    sink.refuse_rcpt(BO, 550, "5.1.1 user unknown")
    report = outbox_sender(sessions, clock, sink).deliver_due()
    assert report.sent == [mids[0], *mids[2:]] and report.failed == [mids[1]]
    assert len(sink.messages) == 3 and sink.connections == 1


def test_outbox_dropped_connection_mid_batch(sink: SmtpSink, tmp_path: Path) -> None:
    """The first message goes, the second is cut off after its DATA: it is retried (the
    at-least-once of a crash), the rest stay queued untouched; nothing goes twice."""
    sessions, clock = world(tmp_path)
    mids = [queue(sessions, clock, ANN, subject=f"n{i}") for i in range(4)]
    sender = outbox_sender(sessions, clock, sink)
    sink.drop_next(after=1)
    report = sender.deliver_due()
    assert report.sent == mids[:1] and report.retry == [mids[1]]
    with sessions() as s:
        rows = {r.message_id: (r.status, r.attempts) for r in s.scalars(select(OutboxRow))}
    assert rows == {mids[0]: ("sent", 1), mids[1]: ("queued", 1), mids[2]: ("queued", 0),
                    mids[3]: ("queued", 0)}
    clock.set(clock.now() + timedelta(minutes=2))
    assert sender.deliver_due().sent == [mids[1], *mids[2:]]
    got = [m.parsed()["Message-ID"] for m in sink.messages]
    assert sorted(got) == sorted(mids) and len(got) == 4  # each exactly once


# --- a macro's status waits for its reply --------------------------------------------------


@pytest.mark.parametrize("refused", [True, False])
def test_a_resolved_reply_refused_for_good_leaves_the_ticket_open(
        sink: SmtpSink, tmp_path: Path, refused: bool) -> None:
    app = build_app(load_config(write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")),
                    FixedClock(utc(2026, 11, 2, 10)), environ={})
    upgrade(app.engine)
    ingest(app, raw_mail(body=PASSWORD), 1)
    with app.sessions.begin() as s:
        reply = prepare_reply(s, app.automation(), 1, "resolved", agent=Agent("Ayşe"),
                              now=app.clock.now())
        sent = send_reply(s, reply, now=app.clock.now(), actor="Ayşe")
    if refused:
        sink.refuse_rcpt(ANN, 550, "5.1.1 user unknown", count=2)  # the ETA reply, the macro
    outbox_sender(app.sessions, app.clock, sink).deliver_due()
    with app.sessions() as s:
        shown = show_ticket(s, 1)
    kinds = [e["kind"] for e in shown["events"]]
    if not refused:
        assert shown["status"] == "solved" and "macro_sent" in kinds
        return
    assert shown["status"] == "new" and "status" not in kinds  # never solved
    [withheld] = [e for e in shown["events"] if e["kind"] == "status_withheld"]
    assert withheld["status"] == "solved" and withheld["message_id"] == sent.message_id
    assert "5.1.1 user unknown" in withheld["reason"]
    assert [e["address"] for e in shown["events"] if e["kind"] == "delivery_failed"] == [
        ANN, ANN]


def test_a_refused_login_is_temporary_and_ends_the_batch(tmp_path: Path) -> None:
    with SmtpSink(require_auth=True) as strict:
        wrong = SmtpSettings("127.0.0.1", strict.port, "none", "smtpuser", "wrong", timeout=10)
        with pytest.raises(SendError, match="535") as err:
            send(wrong, RAW, SUPPORT, [ANN])
        assert not err.value.permanent and err.value.connection_lost
        sessions, clock = world(tmp_path)
        mids = [queue(sessions, clock, ANN, subject=f"n{i}") for i in range(2)]
        report = OutboxSender(sessions, clock, partial(send, wrong),
                              connect=partial(connection, wrong),
                              own_addresses=[SUPPORT]).deliver_due()
        assert report.retry == mids[:1] and report.failed == [] and strict.messages == []
