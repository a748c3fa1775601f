"""A reopened ticket gets a new response target from the reopening message; a
closed period's figures never change because of a later reopen (DESIGN.md,
"Metric definitions": Reopen)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maild.actions import AutomationHandler
from maild.app import App, build_app
from maild.clock import FixedClock
from maild.config import load_config
from maild.ingest import IngestItem, Ingestor
from maild.report.kpi import compute_stats
from maild.sla import check_sla, set_status
from maild.store.db import upgrade
from maild.store.models import Event, Ticket
from tests.builders import raw_mail, utc
from tests.test_replying import SUPPORT, write_config

# UTC, Mon-Fri 09:00-18:00 (the defaults); first response 4 h, next response 2 h.
POLICY = """
[sla.policies.default]
first_response = "4h"
next_response = "2h"
"""
MONDAY = utc(2026, 11, 2, 10)  # the ticket opens
WEEK_LATER = utc(2026, 11, 9, 10)  # the customer writes again


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> App:
    built = build_app(load_config(write_config(tmp_path, db_url, POLICY)),
                      FixedClock(MONDAY), environ={})
    upgrade(built.engine)
    return built


def ingest(app: App, raw: bytes, uid: int, at: datetime, role: str = "inbox") -> None:
    assert isinstance(app.clock, FixedClock)
    app.clock.set(at)
    ing = Ingestor(app.sessions, app.clock, SUPPORT, calendar=app.automation().calendar,
                   handlers=[AutomationHandler(app.automation(), app.clock)])
    ing.ingest_batch(role, "INBOX" if role == "inbox" else "Sent", 1,
                     [IngestItem(uid, raw, at)])


def solve(app: App, at: datetime) -> None:
    with app.sessions.begin() as s:
        set_status(s, s.get_one(Ticket, 1), "solved", at, actor="agent")


def stats(app: App, since: datetime, until: datetime, now: datetime) -> dict[str, Any]:
    with app.sessions() as s:
        return compute_stats(s, app.automation().calendar, since, until, now)


def check(app: App, now: datetime) -> Sequence[int]:
    with app.sessions.begin() as s:
        report = check_sla(s, now)
    return report.breached + report.next_breached


def assert_no_event_against_an_earlier_due_time(app: App) -> None:
    """Every warning and breach names a due time after the latest event that set a
    clock (the opening, a reopening, a customer's follow-up, a resume) before it."""
    setters = {"opened", "joined", "reopened", "customer_replied", "sla_resumed"}
    with app.sessions() as s:
        evs = list(s.scalars(select(Event).order_by(Event.at, Event.id)))
    last_set: datetime | None = None
    for e in evs:
        if e.kind in setters and e.detail.get("direction", "in") == "in":
            last_set = e.at
        if e.kind in ("sla_warning", "sla_breach", "next_response_breach"):
            due = datetime.fromisoformat(e.detail["due_at"])
            assert last_set is not None and due > last_set.replace(tzinfo=due.tzinfo), \
                f"{e.kind} at {e.at} against due {due}, set before {last_set}"


def test_solved_without_reply_then_reopened_gets_a_new_target(app: App) -> None:
    ingest(app, raw_mail(), 1, MONDAY)
    solve(app, utc(2026, 11, 2, 11))  # solved with no reply, before its 14:00 due time
    assert check(app, utc(2026, 11, 2, 15)) == []
    monday = (utc(2026, 11, 2), utc(2026, 11, 3))
    before = stats(app, *monday, now=utc(2026, 11, 9, 9))

    ingest(app, raw_mail(msgid="<m2@example.org>", subject="Re: Order missing",
                         in_reply_to="<m1@example.org>"), 2, WEEK_LATER)
    with app.sessions() as s:
        t = s.get_one(Ticket, 1)
        assert t.status == "open"
        assert t.sla_due_at == utc(2026, 11, 9, 14)  # 4 business hours from the reopening
        assert t.sla_warn_at == utc(2026, 11, 9, 13, 12)
    assert check(app, utc(2026, 11, 9, 10, 1)) == []  # no breach at once
    # the closed period is unchanged (before the fix: one breach more, due Monday)
    assert stats(app, *monday, now=utc(2026, 11, 9, 11)) == before
    assert check(app, utc(2026, 11, 9, 14)) == [1]  # the new target, when it passes
    with app.sessions() as s:
        breach = s.scalars(select(Event).where(Event.kind == "sla_breach")).one()
        assert breach.detail["due_at"] == "2026-11-09T14:00:00+00:00"
    day = stats(app, utc(2026, 11, 9), utc(2026, 11, 10), now=utc(2026, 11, 10))
    assert day["sla"]["breaches"] == 1 and before["sla"]["breaches"] == 0
    assert_no_event_against_an_earlier_due_time(app)


def test_breached_then_solved_then_reopened_keeps_the_old_breach(app: App) -> None:
    ingest(app, raw_mail(), 1, MONDAY)
    assert check(app, utc(2026, 11, 2, 14)) == [1]  # breached while open
    solve(app, utc(2026, 11, 2, 16))
    monday = (utc(2026, 11, 2), utc(2026, 11, 3))
    before = stats(app, *monday, now=utc(2026, 11, 9, 9))
    assert before["sla"]["breaches"] == 1
    ingest(app, raw_mail(msgid="<m2@example.org>", subject="Re: Order missing",
                         in_reply_to="<m1@example.org>"), 2, WEEK_LATER)
    assert check(app, utc(2026, 11, 9, 10, 1)) == []
    assert stats(app, *monday, now=utc(2026, 11, 9, 11)) == before
    with app.sessions() as s:  # the reopening's own target: the next-response one
        assert s.get_one(Ticket, 1).next_due_at == utc(2026, 11, 9, 12)
    assert check(app, utc(2026, 11, 9, 12)) == [1]
    assert_no_event_against_an_earlier_due_time(app)


def test_answered_follow_up_solved_then_reopened_no_stale_next_breach(app: App) -> None:
    ingest(app, raw_mail(), 1, MONDAY)
    reply = raw_mail(frm=f"Support <{SUPPORT}>", to="ann@example.org", msgid="<r1@example.com>",
                     subject="Re: Order missing", in_reply_to="<m1@example.org>",
                     date="Mon, 02 Nov 2026 11:00:00 +0000")
    ingest(app, reply, 1, utc(2026, 11, 2, 11), role="sent")
    ingest(app, raw_mail(msgid="<m2@example.org>", subject="Re: Order missing",
                         in_reply_to="<r1@example.com>"), 2, utc(2026, 11, 2, 12))
    with app.sessions() as s:
        assert s.get_one(Ticket, 1).next_due_at == utc(2026, 11, 2, 14)
    solve(app, utc(2026, 11, 2, 13))  # "thanks": solved with no further reply
    assert check(app, utc(2026, 11, 2, 15)) == []
    ingest(app, raw_mail(msgid="<m3@example.org>", subject="Re: Order missing",
                         in_reply_to="<r1@example.com>"), 3, WEEK_LATER)
    assert check(app, utc(2026, 11, 9, 10, 1)) == []  # not against Monday's due time
    with app.sessions() as s:
        assert s.get_one(Ticket, 1).next_due_at == utc(2026, 11, 9, 12)
    assert check(app, utc(2026, 11, 9, 12)) == [1]
    assert_no_event_against_an_earlier_due_time(app)
