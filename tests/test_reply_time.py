"""An agent reply's time is never before the customer message it answers: a Date
header earlier than that gives way to its arrival in Sent (DESIGN.md, "Metric
definitions": Arrival time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from maild.app import App, build_app
from maild.clock import FixedClock
from maild.config import load_config
from maild.store.db import upgrade
from maild.store.models import MessageRow, Ticket
from tests.builders import raw_mail, utc
from tests.test_reopen_sla import ingest, stats
from tests.test_replying import SUPPORT, write_config


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> App:
    built = build_app(load_config(write_config(tmp_path, db_url)),
                      FixedClock(utc(2026, 11, 2, 10)), environ={})
    upgrade(built.engine)
    return built


def reply(date: str) -> bytes:
    return raw_mail(frm=f"Support <{SUPPORT}>", to="ann@example.org", msgid="<r1@example.com>",
                    subject="Re: Order missing", in_reply_to="<m1@example.org>", date=date)


def test_reply_dated_before_the_customer_message_is_timed_by_its_arrival(app: App) -> None:
    ingest(app, raw_mail(), 1, utc(2026, 11, 2, 10))  # the customer's message: 10:00
    ingest(app, raw_mail(frm="Bob <bob@example.net>", msgid="<b1@example.net>",
                         subject="Refund please"), 2, utc(2026, 11, 2, 10, 30))
    # the agent's clock is 40 minutes slow: Date 09:50, in Sent at 11:00
    ingest(app, reply("Mon, 02 Nov 2026 09:50:00 +0000"), 1, utc(2026, 11, 2, 11),
           role="sent")
    with app.sessions() as s:
        t = s.get_one(Ticket, 1)
        assert t.first_response_at == utc(2026, 11, 2, 11)
        assert t.frt_wall_seconds == 3600 and t.frt_business_seconds == 3600
        out = s.query(MessageRow).filter_by(message_id="<r1@example.com>").one()
        assert out.arrived_at == utc(2026, 11, 2, 11)
    day = stats(app, utc(2026, 11, 2), utc(2026, 11, 3), now=utc(2026, 11, 2, 12))
    assert day["frt_wall_seconds"]["median"] == 3600
    assert day["backlog"]["total"] == 2
    assert day["longest_wait_seconds"] == 5400  # Bob, since 10:30; Ann was answered


def test_reply_dated_after_the_customer_message_keeps_its_date(app: App) -> None:
    ingest(app, raw_mail(), 1, utc(2026, 11, 2, 10))
    ingest(app, reply("Mon, 02 Nov 2026 10:20:00 +0000"), 1, utc(2026, 11, 2, 11),
           role="sent")
    with app.sessions() as s:
        assert s.get_one(Ticket, 1).first_response_at == utc(2026, 11, 2, 10, 20)


def test_history_import_times_a_reply_by_the_message_it_answers_not_a_later_one(app: App
                                                                                ) -> None:
    """INBOX is imported before Sent: the customer's follow-up (12:00) is stored before
    the reply (Date 10:20) that answered their first message (10:00). The reply keeps its
    Date; the follow-up stays the one waiting."""
    ingest(app, raw_mail(), 1, utc(2026, 11, 2, 10))
    ingest(app, raw_mail(msgid="<m2@example.org>", subject="Re: Order missing",
                         in_reply_to="<r1@example.com>"), 2, utc(2026, 11, 2, 12))
    ingest(app, reply("Mon, 02 Nov 2026 10:20:00 +0000"), 1, utc(2026, 11, 2, 13),
           role="sent")
    with app.sessions() as s:
        t = s.get_one(Ticket, 1)
        assert t.first_response_at == utc(2026, 11, 2, 10, 20)
        assert t.frt_wall_seconds == 1200
