"""Daylight saving time: the same SLA, calendar, digest and schedule cases as the
Europe/Istanbul ones (no DST) in Europe/Berlin and America/New_York, across both
changes of 2026 (Berlin: Mar 29 02:00 -> 03:00, Oct 25 03:00 -> 02:00; New York:
Mar 8 02:00 -> 03:00, Nov 1 02:00 -> 01:00). Expected values are local wall times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from maild.app import App, build_app
from maild.calendar import BusinessCalendar
from maild.clock import FixedClock
from maild.config import load_config
from maild.report.digest import build_digest, day_bounds
from maild.schedule import build_scheduler, digest_slot
from maild.sla import start_clock
from maild.store.db import upgrade
from maild.store.models import Ticket
from tests.builders import raw_mail
from tests.test_reopen_sla import ingest
from tests.test_replying import write_config

BER, NYC = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
H = timedelta(hours=1)
# (zone, the change day, the local hour the clock jumps at, hours in that day)
SPRING = [("Europe/Berlin", date(2026, 3, 29), 23), ("America/New_York", date(2026, 3, 8), 23)]
FALL = [("Europe/Berlin", date(2026, 10, 25), 25), ("America/New_York", date(2026, 11, 1), 25)]
CHANGES = SPRING + FALL


def wall(zone: str, day: date, hour: int, minute: int = 0, fold: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(zone),
                    fold=fold)


def at_utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


# --- BusinessCalendar -----------------------------------------------------------------

@pytest.mark.parametrize(("zone", "day", "hours"), CHANGES)
def test_a_whole_change_day_is_23_or_25_business_hours(zone: str, day: date,
                                                       hours: int) -> None:
    cal = BusinessCalendar(zone, "24/7")
    start, end = wall(zone, day, 0), wall(zone, day + timedelta(days=1), 0)
    assert cal.business_seconds(start, end) == hours * 3600
    assert cal.add(start, hours * H) == end
    assert cal.add(start, 24 * H) == end + (24 - hours) * H


# Sunday hours that straddle the change (01:00-04:00 contains it in both zones), start
# inside the spring gap or the autumn fold, or sit right next to the change.
@pytest.mark.parametrize(("zone", "day", "spec", "start_utc", "end_utc"), [
    # Berlin spring: 01:00 CET = 00:00Z; 04:00 CEST = 02:00Z -> 2 h
    ("Europe/Berlin", date(2026, 3, 29), "Sun 01:00-04:00", (0, 0), (2, 0)),
    # 02:30 does not exist: the first instant the clock reads at least 02:30 (03:00 CEST)
    ("Europe/Berlin", date(2026, 3, 29), "Sun 02:30-04:00", (1, 0), (2, 0)),
    ("Europe/Berlin", date(2026, 3, 29), "Sun 00:00-02:00", (-1, 0), (1, 0)),  # up to it
    ("Europe/Berlin", date(2026, 3, 29), "Sun 03:00-05:00", (1, 0), (3, 0)),  # from it
    # Berlin autumn: 01:00 CEST = 23:00Z the day before; 04:00 CET = 03:00Z -> 4 h
    ("Europe/Berlin", date(2026, 10, 25), "Sun 01:00-04:00", (-1, 0), (3, 0)),
    # 02:30 happens twice: its first occurrence (CEST, 00:30Z)
    ("Europe/Berlin", date(2026, 10, 25), "Sun 02:30-04:00", (0, 30), (3, 0)),
    ("Europe/Berlin", date(2026, 10, 25), "Sun 03:00-05:00", (2, 0), (4, 0)),
    # New York spring: 01:00 EST = 06:00Z; 04:00 EDT = 08:00Z -> 2 h
    ("America/New_York", date(2026, 3, 8), "Sun 01:00-04:00", (6, 0), (8, 0)),
    ("America/New_York", date(2026, 3, 8), "Sun 02:30-04:00", (7, 0), (8, 0)),
    ("America/New_York", date(2026, 3, 8), "Sun 00:00-02:00", (5, 0), (7, 0)),
    # New York autumn: 01:00 EDT = 05:00Z; 04:00 EST = 09:00Z -> 4 h
    ("America/New_York", date(2026, 11, 1), "Sun 01:00-04:00", (5, 0), (9, 0)),
    ("America/New_York", date(2026, 11, 1), "Sun 01:30-03:00", (5, 30), (8, 0)),  # fold
    ("America/New_York", date(2026, 11, 1), "Sun 02:00-04:00", (7, 0), (9, 0)),
])
def test_hours_around_the_change(zone: str, day: date, spec: str, start_utc: tuple[int, int],
                                 end_utc: tuple[int, int]) -> None:
    cal = BusinessCalendar(zone, spec)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    opens = midnight + timedelta(hours=start_utc[0], minutes=start_utc[1])
    closes = midnight + timedelta(hours=end_utc[0], minutes=end_utc[1])
    length = closes - opens
    week_before, week_after = opens - timedelta(days=2), closes + timedelta(days=2)
    assert cal.business_seconds(week_before, week_after) == length.total_seconds()
    assert cal.next_open(week_before) == opens
    assert not cal.is_open(opens - timedelta(microseconds=1)) and cal.is_open(opens)
    assert cal.is_open(closes - timedelta(microseconds=1)) and not cal.is_open(closes)
    assert cal.add(week_before, length) == closes
    half = length / 2
    assert cal.add(opens, half) == opens + half  # real (elapsed) time, not wall time
    assert cal.business_seconds(opens, opens + half) == half.total_seconds()


@pytest.mark.parametrize(("zone", "day", "hours"), CHANGES)
def test_business_seconds_and_add_are_inverse_across_the_change(zone: str, day: date,
                                                                hours: int) -> None:
    cal = BusinessCalendar(zone, "Mon-Sun 00:30-02:45, 03:15-23:00")
    start = wall(zone, day - timedelta(days=1), 20)
    for minutes in range(0, 60 * 30, 7):
        due = cal.add(start, timedelta(minutes=minutes))
        assert cal.business_seconds(start, due) == minutes * 60


@pytest.mark.parametrize(("zone", "friday", "monday"), [
    ("Europe/Berlin", date(2026, 3, 27), date(2026, 3, 30)),
    ("Europe/Berlin", date(2026, 10, 23), date(2026, 10, 26)),
    ("America/New_York", date(2026, 3, 6), date(2026, 3, 9)),
    ("America/New_York", date(2026, 10, 30), date(2026, 11, 2)),
])
def test_sla_due_time_over_a_change_weekend(zone: str, friday: date, monday: date) -> None:
    """A ticket at Friday 16:00 local with a 4 h target (Mon-Fri 09:00-17:00): 1 h on
    Friday, 3 h on Monday, due Monday 12:00 local whatever the offset became."""
    cal = BusinessCalendar(zone, "Mon-Fri 09:00-17:00")
    ticket = Ticket()
    arrived = wall(zone, friday, 16)
    start_clock(ticket, cal, 4 * H, arrived, 0.8)
    assert ticket.sla_due_at == wall(zone, monday, 12)
    assert ticket.sla_warn_at == wall(zone, monday, 11, 12)  # 3 h 12 min
    assert cal.business_seconds(arrived, wall(zone, monday, 17)) == 9 * 3600


# --- the digest -----------------------------------------------------------------------

@pytest.mark.parametrize(("zone", "day", "hours"), CHANGES)
def test_digest_day_bounds_on_the_change_days(zone: str, day: date, hours: int) -> None:
    start, end = day_bounds(day, zone)
    assert start == wall(zone, day, 0) and end == wall(zone, day + timedelta(days=1), 0)
    assert end - start == hours * H
    assert start.utcoffset() == timedelta(0) and end.utcoffset() == timedelta(0)
    before, after = day_bounds(day - timedelta(days=1), zone), day_bounds(
        day + timedelta(days=1), zone)
    assert before[1] == start and after[0] == end  # the days tile, no gap or overlap
    assert before[1] - before[0] == after[1] - after[0] == 24 * H


def app_in(zone: str, tmp: Path, db_url: str, days: str = "") -> App:
    extra = (f'[sla]\ntimezone = "{zone}"\n[digest]\nto = ["manager@example.com"]\n'
             f'at = "08:00"\n{days}')
    return build_app(load_config(write_config(tmp, db_url, extra)),
                     FixedClock(at_utc(2026, 1, 1)), environ={})


@pytest.mark.parametrize(("zone", "day", "hours"), CHANGES)
def test_digest_due_at_08_local_on_the_change_days(zone: str, day: date, hours: int,
                                                   tmp_path: Path) -> None:
    app = app_in(zone, tmp_path, "sqlite:///" + str(tmp_path / "m.db"))
    eight = wall(zone, day, 8)
    assert digest_slot(app, eight - timedelta(minutes=1)) is None
    slot = digest_slot(app, eight.astimezone(UTC))
    assert slot is not None and slot.day == day - timedelta(days=1)
    assert slot.due_at == eight
    late = digest_slot(app, wall(zone, day, 23, 30).astimezone(UTC))
    assert late is not None and late.day == day - timedelta(days=1)
    after = digest_slot(app, wall(zone, day + timedelta(days=1), 0, 30))
    assert after is None  # the next day's digest is due at its own 08:00


@pytest.mark.parametrize(("zone", "day", "hours"), CHANGES)
def test_scheduler_fires_the_digest_at_08_local_on_the_change_days(
        zone: str, day: date, hours: int, tmp_path: Path) -> None:
    app = app_in(zone, tmp_path, "sqlite:///" + str(tmp_path / "m.db"))
    scheduler = build_scheduler(app)
    trigger = scheduler.get_job("digest").trigger
    fires = []
    at = wall(zone, day - timedelta(days=1), 9)
    for _ in range(3):
        at = trigger.get_next_fire_time(None, at + timedelta(seconds=1))
        fires.append(at)
    assert [f.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for f in fires] == [
        datetime.combine(day + timedelta(days=k), datetime.min.time()) + 8 * H
        for k in range(3)]
    assert [f.astimezone(UTC) for f in fires] == [
        wall(zone, day + timedelta(days=k), 8).astimezone(UTC) for k in range(3)]
    real = [f.astimezone(UTC) for f in fires]  # (same-zone subtraction is wall time)
    assert real[1] - real[0] == 24 * H
    assert real[0] - wall(zone, day - timedelta(days=1), 8).astimezone(UTC) == hours * H


def mail_date(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


@pytest.mark.parametrize(("zone", "day", "hours"), CHANGES)
def test_digest_counts_the_whole_change_day_by_local_hour(zone: str, day: date, hours: int,
                                                          db_url: str, tmp_path: Path) -> None:
    """Tickets answered in the first and last local hour of a 23- or 25-hour day, and
    (autumn) one asked in the first 01:xx/02:xx and answered in the repeated one, are
    that day's; the chart counts them by local hour; the next day's are not."""
    app = app_in(zone, tmp_path, db_url)
    upgrade(app.engine)
    next_day = day + timedelta(days=1)
    fold_hour = 2 if zone == "Europe/Berlin" else 1  # the repeated hour in autumn
    pairs = [(wall(zone, day, 0, 10), wall(zone, day, 0, 40)),
             (wall(zone, day, 23, 0), wall(zone, day, 23, 50)),
             (wall(zone, next_day, 0, 5), wall(zone, next_day, 0, 20))]
    if hours == 25:
        pairs.append((wall(zone, day, fold_hour, 30), wall(zone, day, fold_hour, 30, fold=1)))
    for n, (asked, answered) in enumerate(pairs, start=1):
        ingest(app, raw_mail(msgid=f"<m{n}@example.org>", subject=f"Question {n}",
                             frm=f"C{n} <c{n}@example.org>", date=mail_date(asked)), n, asked)
        ingest(app, raw_mail(frm="Support <support@example.com>", to=f"c{n}@example.org",
                             msgid=f"<r{n}@example.com>", subject=f"Re: Question {n}",
                             in_reply_to=f"<m{n}@example.org>", date=mail_date(answered)),
               n, answered, role="sent")
    with app.sessions() as s:
        digest = build_digest(s, app.automation().calendar, day, zone,
                              wall(zone, next_day, 8))
    stats = digest.data["stats"]
    assert stats["tickets_created"] == stats["first_responses"] == len(pairs) - 1
    counts = digest.data["chart"]["counts"]
    expected = [0] * 24
    expected[0] += 1
    expected[23] += 1
    if hours == 25:
        expected[fold_hour] += 1
        assert stats["frt_wall_seconds"]["mean"] == (1800 + 3000 + 3600) / 3
    assert counts == expected
