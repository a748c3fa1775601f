"""Business-time calendar: opening hours, public holidays and SLA arithmetic.

What it is for: answering "is the team working at instant X?", "when will N
business hours have elapsed after X?" and "how much business time lies between
X and Y?" for SLA deadlines, ETA promises and KPIs.

What it must not do: read the clock (callers always pass the instants in), do
I/O other than reading the `holidays` package's bundled data, or know anything
about tickets, mail or the database.

Time model. Opening hours are local wall-clock intervals per weekday. For each
local date the intervals are converted bound by bound to UTC, so DST days are
23 or 25 hours long exactly as the wall clock says. A wall time that does not
exist (inside a spring-forward gap) means the first instant at which the local
clock reads at least that time; an ambiguous one (fall-back) means its first
occurrence. Intervals are half-open: open at the opening minute, closed at the
closing minute. Instants are handled as integer microseconds since the epoch,
so `add` and `business_seconds` are exact inverses.

Efficiency. The UTC intervals of one local year (and their running totals) are
built day by day once, on first use, and cached; queries then bisect, so a
`business_seconds` call costs two look-ups however far apart the instants are.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

from maild.errors import ConfigError
from maild.eta_wording import describe_eta

__all__ = [
    "BusinessCalendar", "Hours", "describe_eta", "load_timezone",
    "parse_business_hours", "parse_duration",
]  # fmt: skip

Hours = dict[int, list[tuple[time, time]]]
"""Weekday (0 = Monday) -> sorted, non-overlapping (open, close) intervals.

A close of `time(0, 0)` means 24:00 (midnight at the end of the day); days
that are absent are closed.
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)
_MAX_CLOSED_YEARS = 3
_DURATION_RE = re.compile(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", re.IGNORECASE)
_INTERVAL_RE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_INDEX = {n.lower(): i for ns in (_DAY_NAMES, _FULL_DAY_NAMES) for i, n in enumerate(ns)}


def parse_duration(text: str) -> timedelta:
    """Parse "4h", "30m", "1h30m", "90s", "2h 15m"; anything else is a ConfigError."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ConfigError(
            f"invalid duration {text!r}: expected hours/minutes/seconds such as "
            "'4h', '30m', '1h30m' or '90s'"
        )
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    duration = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if duration <= timedelta(0):
        raise ConfigError(f"invalid duration {text!r}: must be longer than zero")
    return duration


def load_timezone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or a ConfigError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown timezone {name!r}") from exc


def parse_business_hours(spec: str) -> Hours:
    """Parse "Mon-Fri 09:00-12:30,13:30-18:00; Sat 10:00-14:00" or "24/7"."""
    text = spec.strip()
    if text == "24/7":
        return {day: [(time(0), time(0))] for day in range(7)}
    if not text:
        raise ConfigError("business hours are empty: expected e.g. 'Mon-Fri 09:00-18:00'")
    week: Hours = {}
    for clause in text.split(";"):
        parts = clause.split(None, 1)
        if not parts:
            raise ConfigError(f"business hours {spec!r}: empty part (stray ';')")
        if len(parts) != 2:
            raise ConfigError(
                f"business hours {spec!r}: part {clause.strip()!r} needs days and hours, "
                "e.g. 'Mon-Fri 09:00-18:00'"
            )
        intervals = [_parse_interval(piece.strip(), spec) for piece in parts[1].split(",")]
        for day in _parse_days(parts[0], spec):
            week.setdefault(day, []).extend(intervals)
    for day, intervals in week.items():
        intervals.sort()
        for (a_open, a_close), (b_open, b_close) in zip(intervals, intervals[1:], strict=False):
            if a_close == time(0) or a_close > b_open:
                raise ConfigError(
                    f"business hours {spec!r}: overlapping intervals on {_DAY_NAMES[day]}: "
                    f"{_fmt(a_open, a_close)} and {_fmt(b_open, b_close)}"
                )
    return dict(sorted(week.items()))


def _parse_days(text: str, spec: str) -> list[int]:
    days: list[int] = []
    for item in text.split(","):
        first, _, last = item.partition("-")
        try:
            start = _DAY_INDEX[first.strip().lower()]
            end = _DAY_INDEX[last.strip().lower()] if last else start
        except KeyError:
            raise ConfigError(
                f"business hours {spec!r}: bad day or day range {item!r} "
                "(use Mon..Sun, e.g. 'Mon-Fri' or 'Sun-Thu')"
            ) from None
        days.extend((start + k) % 7 for k in range((end - start) % 7 + 1))
    return days


def _parse_interval(text: str, spec: str) -> tuple[time, time]:
    match = _INTERVAL_RE.fullmatch(text)
    bad = f"business hours {spec!r}: bad interval {text!r}"
    if match is None:
        raise ConfigError(f"{bad} (expected HH:MM-HH:MM, e.g. 09:00-18:00)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ConfigError(f"{bad} (hours are 00-23, minutes 00-59; 24:00 only as an end)")
    opening, closing = time(h1, m1), time(h2 % 24, m2)
    if (h2, m2) <= (h1, m1):
        raise ConfigError(f"{bad} (closing must be after opening; use 24:00 for midnight)")
    return opening, closing


def _fmt(opening: time, closing: time) -> str:
    end = "24:00" if closing == time(0) else closing.strftime("%H:%M")
    return f"{opening.strftime('%H:%M')}-{end}"


def _to_us(at: datetime) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: pass a timezone-aware datetime")
    return (at - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class _Year:
    """Open intervals (UTC microseconds) of one local year, with running totals."""

    starts: list[int]
    ends: list[int]
    before: list[int]  # business time in this year before interval i opens
    after: list[int]  # ... and after it closes

    @property
    def total(self) -> int:
        return self.after[-1] if self.after else 0

    def elapsed(self, us: int) -> int:
        """Business microseconds in this year up to instant `us`."""
        i = bisect_right(self.starts, us) - 1
        if i < 0:
            return 0
        return self.before[i] + min(us, self.ends[i]) - self.starts[i]

    def instant(self, target: int) -> int:
        """The instant at which `target` (0 < target <= total) has elapsed."""
        i = bisect_left(self.after, target)
        return self.starts[i] + target - self.before[i]


class BusinessCalendar:
    """Opening hours in one timezone, minus public holidays and extra closed dates.

    `holidays` is a country code for the `holidays` package, optionally with a
    subdivision ("TR", "DE-BY", "US-CA"). Every method takes timezone-aware
    datetimes (naive ones are a ValueError) and returns UTC datetimes.
    """

    def __init__(
        self,
        timezone: str,
        business_hours: str,
        holidays: str | None = None,
        extra_closed_dates: Iterable[date] = (),
    ) -> None:
        self.timezone = timezone
        self.tz = load_timezone(timezone)
        self.hours = parse_business_hours(business_hours)
        self.holidays = holidays
        self._country: str | None = None
        self._subdiv: str | None = None
        if holidays:
            self._country, self._subdiv = _check_holiday_code(holidays)
        self.extra_closed_dates = frozenset(extra_closed_dates)
        self._years: dict[int, _Year] = {}
        self._span = (0, 0, 0)  # (start, end) in UTC microseconds of the last local year seen

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar({self.timezone!r}, hours={self.hours!r}, "
            f"holidays={self.holidays!r}, extra_closed={len(self.extra_closed_dates)})"
        )

    def is_open(self, at: datetime) -> bool:
        """Whether `at` falls inside an opening interval."""
        us = _to_us(at)
        year = self._year(self._local_year(us))
        i = bisect_right(year.starts, us) - 1
        return i >= 0 and us < year.ends[i]

    def next_open(self, at: datetime) -> datetime:
        """`at` itself (in UTC) if open, else the next opening instant."""
        us = _to_us(at)
        if self.is_open(at):
            return _from_us(us)
        local_year = self._local_year(us)
        year = self._year(local_year)
        i = bisect_right(year.starts, us)
        if i < len(year.starts):
            return _from_us(year.starts[i])
        for later in self._years_after(local_year):
            if later.starts:
                return _from_us(later.starts[0])
        raise AssertionError("unreachable: _years_after raises first")

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which `duration` of business time has elapsed after `start`."""
        if duration < timedelta(0):
            raise ValueError(f"negative business duration {duration}")
        if not duration:
            return self.next_open(start)
        us = _to_us(start)
        local_year = self._local_year(us)
        year = self._year(local_year)
        target = year.elapsed(us) + duration // _US
        if target <= year.total:
            return _from_us(year.instant(target))
        target -= year.total
        for later in self._years_after(local_year):
            if target <= later.total:
                return _from_us(later.instant(target))
            target -= later.total
        raise AssertionError("unreachable: _years_after raises first")

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Business time between two instants, in seconds (0 if end <= start)."""
        a, b = _to_us(start), _to_us(end)
        if b <= a:
            return 0.0
        ya, yb = self._local_year(a), self._local_year(b)
        if ya == yb:
            year = self._year(ya)
            return (year.elapsed(b) - year.elapsed(a)) / 1e6
        first, last = self._year(ya), self._year(yb)
        middle = sum(self._year(y).total for y in range(ya + 1, yb))
        return (first.total - first.elapsed(a) + middle + last.elapsed(b)) / 1e6

    def _local_year(self, us: int) -> int:
        """The local year of instant `us`; the last year's bounds are kept, because KPI
        runs ask tens of thousands of times about instants in the same year."""
        start, end, year = self._span
        if start <= us < end:
            return year
        year = _from_us(us).astimezone(self.tz).year
        self._span = (_to_us(datetime(year, 1, 1, tzinfo=self.tz)),
                      _to_us(datetime(year + 1, 1, 1, tzinfo=self.tz)) if year < MAXYEAR
                      else start, year)
        return year

    def _years_after(self, local_year: int) -> Iterator[_Year]:
        """Following years; ConfigError after too many consecutive closed ones."""
        closed_run = 0
        for number in range(local_year + 1, MAXYEAR):
            year = self._year(number)
            closed_run = 0 if year.starts else closed_run + 1
            if closed_run >= _MAX_CLOSED_YEARS:
                raise ConfigError(
                    f"business calendar {self!r} has no open time in "
                    f"{_MAX_CLOSED_YEARS} consecutive years from {number - closed_run + 1}"
                )
            yield year
        raise ValueError("date out of the supported range")

    def _year(self, number: int) -> _Year:
        cached = self._years.get(number)
        if cached is None:
            cached = self._years[number] = self._build_year(number)
        return cached

    def _build_year(self, number: int) -> _Year:
        if not MINYEAR < number < MAXYEAR:
            raise ValueError(f"year {number} is out of the supported range")
        closed = self._closed_dates(number)
        year = _Year([], [], [], [])
        total, day = 0, date(number, 1, 1)
        while day.year == number:
            for opening, closing in () if day in closed else self.hours.get(day.weekday(), ()):
                start = self._wall_us(day, opening)
                end = self._wall_us(day + _ONE_DAY if closing == time(0) else day, closing)
                if end > start:
                    year.starts.append(start)
                    year.ends.append(end)
                    year.before.append(total)
                    total += end - start
                    year.after.append(total)
            day += _ONE_DAY
        return year

    def _closed_dates(self, number: int) -> set[date]:
        closed = {d for d in self.extra_closed_dates if d.year == number}
        if self._country:
            closed.update(
                holidays_lib.country_holidays(self._country, subdiv=self._subdiv, years=number)
            )
        return closed

    def _wall_us(self, day: date, wall: time) -> int:
        """First instant at which the local clock reads at least `day` `wall`."""
        naive = datetime.combine(day, wall)
        us = _to_us(naive.replace(tzinfo=self.tz))
        if _from_us(us).astimezone(self.tz).replace(tzinfo=None) == naive:
            return us
        # In a spring-forward gap: bisect (in seconds) for the transition instant.
        other = _to_us(naive.replace(tzinfo=self.tz, fold=1))
        lo, hi = min(us, other) // 1_000_000, -(-max(us, other) // 1_000_000)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _from_us(mid * 1_000_000).astimezone(self.tz).replace(tzinfo=None) >= naive:
                hi = mid
            else:
                lo = mid
        return hi * 1_000_000


def _check_holiday_code(code: str) -> tuple[str, str | None]:
    """Split "US-CA" into ("US", "CA") and check the `holidays` package knows it."""
    country, _, subdiv = code.strip().partition("-")
    candidates = [subdiv, subdiv.upper()] if subdiv else [""]
    for candidate in candidates:
        try:
            holidays_lib.country_holidays(country.upper(), subdiv=candidate or None, years=[])
        except NotImplementedError:
            continue
        return country.upper(), candidate or None
    raise ConfigError(f"unknown holiday calendar {code!r} (expected e.g. 'TR', 'DE-BY', 'US-CA')")
