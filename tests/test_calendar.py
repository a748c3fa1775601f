"""Tests for maild.calendar and maild.eta_wording; every expected value is hand-computed."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.calendar import (
    BusinessCalendar,
    describe_eta,
    load_timezone,
    parse_business_hours,
    parse_duration,
)
from maild.errors import ConfigError
from maild.eta_wording import (
    turkish_dative_suffix,
    turkish_last_number_word,
    turkish_time_dative,
)

IST = ZoneInfo("Europe/Istanbul")
BER = ZoneInfo("Europe/Berlin")
NYC = ZoneInfo("America/New_York")
H = timedelta(hours=1)
M = timedelta(minutes=1)

TR_CAL = BusinessCalendar("Europe/Istanbul", "Mon-Fri 09:00-18:00", holidays="TR")
PLAIN_IST = BusinessCalendar("Europe/Istanbul", "Mon-Fri 09:00-18:00")
BER_LUNCH = BusinessCalendar("Europe/Berlin", "Mon-Fri 09:00-12:30,13:30-18:00", holidays="DE")
BER_24 = BusinessCalendar("Europe/Berlin", "24/7")
NYC_CAL = BusinessCalendar("America/New_York", "Mon-Fri 09:00-17:00")
NYC_24 = BusinessCalendar("America/New_York", "24/7")


def ist(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=IST)


def ber(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=BER)


def nyc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=NYC)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


# --- parse_duration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4h", 4 * H),
        ("30m", 30 * M),
        ("1h30m", 90 * M),
        ("90s", timedelta(seconds=90)),
        ("2h 15m", 135 * M),
        (" 1h 2m 3s ", timedelta(hours=1, minutes=2, seconds=3)),
        ("48h", 48 * H),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "  ", "-4h", "4 hours", "1d", "4", "1.5h", "30m1h", "h", "0m", "4h-"]
)
def test_parse_duration_rejects_and_quotes_value(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_duration(text)
    assert repr(text) in str(err.value)


# --- parse_business_hours -------------------------------------------------------------------

NINE_SIX = [(time(9), time(18))]


def test_parse_simple_week() -> None:
    assert parse_business_hours("Mon-Fri 09:00-18:00") == {d: NINE_SIX for d in range(5)}


def test_parse_multiple_clauses_and_short_friday() -> None:
    hours = parse_business_hours("Mon-Thu 09:00-18:00; Fri 09:00-13:00")
    assert hours == {0: NINE_SIX, 1: NINE_SIX, 2: NINE_SIX, 3: NINE_SIX, 4: [(time(9), time(13))]}


def test_parse_lunch_break_sorted() -> None:
    hours = parse_business_hours("Mon-Fri 13:30-18:00, 09:00-12:30")
    assert hours[2] == [(time(9), time(12, 30)), (time(13, 30), time(18))]
    assert set(hours) == {0, 1, 2, 3, 4}


def test_parse_single_day_wrapping_range_and_day_list() -> None:
    assert parse_business_hours("Sat 10:00-14:00") == {5: [(time(10), time(14))]}
    assert set(parse_business_hours("Sun-Thu 08:00-17:00")) == {6, 0, 1, 2, 3}
    assert set(parse_business_hours("Fri-Mon 08:00-17:00")) == {4, 5, 6, 0}
    assert set(parse_business_hours("mon,Wed,friday 08:00-17:00")) == {0, 2, 4}


def test_parse_24_7_and_midnight_end() -> None:
    assert parse_business_hours("24/7") == {d: [(time(0), time(0))] for d in range(7)}
    assert parse_business_hours("Sat 20:00-24:00") == {5: [(time(20), time(0))]}


@pytest.mark.parametrize(
    ("spec", "bad_part"),
    [
        ("", "empty"),
        ("Mon-Fri", "'Mon-Fri'"),
        ("Mon-Fry 09:00-18:00", "'Mon-Fry'"),
        ("Mon-Fri 9-18", "'9-18'"),
        ("Mon-Fri 09:00-25:00", "'09:00-25:00'"),
        ("Mon-Fri 09:60-18:00", "'09:60-18:00'"),
        ("Mon-Fri 18:00-09:00", "'18:00-09:00'"),
        ("Mon-Fri 09:00-09:00", "'09:00-09:00'"),
        ("Mon-Fri 22:00-00:00", "'22:00-00:00'"),
        ("Mon-Fri 09:00-18:00;", "';'"),
        ("Mon-Fri 09:00-18:00; 24/7", "'24/7'"),
        ("Mon-Fri 09:00-12:00,11:00-13:00", "Mon: 09:00-12:00 and 11:00-13:00"),
        ("Mon-Fri 09:00-18:00; Fri 17:00-20:00", "Fri: 09:00-18:00 and 17:00-20:00"),
        ("Sat 20:00-24:00, 21:00-22:00", "Sat: 20:00-24:00 and 21:00-22:00"),
    ],
)
def test_parse_business_hours_errors_name_the_bad_part(spec: str, bad_part: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_business_hours(spec)
    assert bad_part in str(err.value)


def test_touching_intervals_are_not_overlapping() -> None:
    assert parse_business_hours("Mon 09:00-12:00,12:00-13:00")[0] == [
        (time(9), time(12)),
        (time(12), time(13)),
    ]


# --- construction ---------------------------------------------------------------------------


def test_unknown_timezone() -> None:
    with pytest.raises(ConfigError, match="'Mars/Olympus'"):
        BusinessCalendar("Mars/Olympus", "24/7")
    with pytest.raises(ConfigError, match="'Nowhere'"):
        load_timezone("Nowhere")


@pytest.mark.parametrize("code", ["XX", "US-ZZ", "Turkey"])
def test_unknown_holiday_calendar_names_the_code(code: str) -> None:
    with pytest.raises(ConfigError) as err:
        BusinessCalendar("UTC", "24/7", holidays=code)
    assert repr(code) in str(err.value)


def test_holiday_code_is_case_insensitive_and_takes_a_subdivision() -> None:
    la = ZoneInfo("America/Los_Angeles")
    chavez_day = datetime(2026, 3, 31, 10, tzinfo=la)  # Cesar Chavez Day: California only
    assert not BusinessCalendar("America/Los_Angeles", "Mon-Fri 09:00-17:00", "us-ca").is_open(
        chavez_day
    )
    federal = BusinessCalendar("America/Los_Angeles", "Mon-Fri 09:00-17:00", "US")
    assert federal.is_open(chavez_day)


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2026, 4, 20, 10)
    for call in (
        lambda: TR_CAL.is_open(naive),
        lambda: TR_CAL.next_open(naive),
        lambda: TR_CAL.add(naive, H),
        lambda: TR_CAL.business_seconds(naive, ist(2026, 4, 21)),
        lambda: TR_CAL.business_seconds(ist(2026, 4, 19), naive),
    ):
        with pytest.raises(ValueError, match="naive"):
            call()


# --- is_open / next_open --------------------------------------------------------------------


def test_is_open_boundaries_are_half_open() -> None:
    assert not TR_CAL.is_open(ist(2026, 4, 20, 8, 59, 59))
    assert TR_CAL.is_open(ist(2026, 4, 20, 9))
    assert TR_CAL.is_open(ist(2026, 4, 20, 17, 59, 59))
    assert not TR_CAL.is_open(ist(2026, 4, 20, 18))
    assert not TR_CAL.is_open(ist(2026, 4, 18, 12))  # Saturday
    assert not TR_CAL.is_open(ist(2026, 4, 23, 12))  # National Sovereignty and Children's Day
    assert PLAIN_IST.is_open(ist(2026, 4, 23, 12))


def test_is_open_accepts_any_timezone() -> None:
    assert TR_CAL.is_open(utc(2026, 4, 20, 6))  # 09:00 in Istanbul (UTC+3)
    assert not TR_CAL.is_open(utc(2026, 4, 20, 5, 59))


def test_next_open() -> None:
    assert TR_CAL.next_open(ist(2026, 4, 18, 12)) == utc(2026, 4, 20, 6)  # Sat -> Mon 09:00
    assert TR_CAL.next_open(ist(2026, 4, 22, 18)) == utc(2026, 4, 24, 6)  # Wed -> Fri (holiday)
    open_now = ist(2026, 4, 20, 10, 15)
    assert TR_CAL.next_open(open_now) == open_now
    assert TR_CAL.next_open(open_now).utcoffset() == timedelta(0)


def test_next_open_across_new_year() -> None:
    # Thu 2026-12-31 18:00 -> Fri 1 Jan is New Year's Day -> Mon 2027-01-04 09:00.
    assert TR_CAL.next_open(ist(2026, 12, 31, 18)) == ist(2027, 1, 4, 9)


# --- add ------------------------------------------------------------------------------------


def test_friday_afternoon_plus_four_hours_is_monday_noon() -> None:
    due = PLAIN_IST.add(ist(2026, 4, 17, 17), 4 * H)  # 1h Friday + 3h Monday
    assert due == ist(2026, 4, 20, 12)
    assert due.tzinfo is UTC


def test_turkish_holidays_are_skipped() -> None:
    # Wed 22 Apr 17:00 + 4h: 1h Wed, Thu 23 Apr is a holiday, 3h Fri -> Fri 12:00.
    assert TR_CAL.add(ist(2026, 4, 22, 17), 4 * H) == ist(2026, 4, 24, 12)
    assert PLAIN_IST.add(ist(2026, 4, 22, 17), 4 * H) == ist(2026, 4, 23, 12)
    # Wed 28 Oct 16:00 + 4h: 2h Wed, Thu 29 Oct is Republic Day, 2h Fri -> Fri 11:00.
    assert TR_CAL.add(ist(2026, 10, 28, 16), 4 * H) == ist(2026, 10, 30, 11)


def test_start_before_opening_on_a_holiday_and_in_lunch_break() -> None:
    assert TR_CAL.add(ist(2026, 4, 20, 7, 30), H) == ist(2026, 4, 20, 10)
    assert TR_CAL.add(ist(2026, 4, 23, 10), 2 * H) == ist(2026, 4, 24, 11)  # on a holiday
    assert BER_LUNCH.add(ber(2026, 6, 15, 12, 45), H) == ber(2026, 6, 15, 14, 30)
    assert BER_LUNCH.add(ber(2026, 6, 15, 12), H) == ber(2026, 6, 15, 14)  # 30m + lunch + 30m
    # Fri 17:30 + 4h: 30m Fri, Mon 09:00-12:30 is 3.5h -> Mon 12:30 (the break's start).
    assert BER_LUNCH.add(ber(2026, 6, 12, 17, 30), 4 * H) == ber(2026, 6, 15, 12, 30)


def test_due_exactly_at_closing_stays_on_that_day() -> None:
    assert PLAIN_IST.add(ist(2026, 4, 17, 14), 4 * H) == ist(2026, 4, 17, 18)


def test_zero_and_negative_durations() -> None:
    assert TR_CAL.add(ist(2026, 4, 18, 12), timedelta(0)) == ist(2026, 4, 20, 9)
    assert TR_CAL.add(ist(2026, 4, 20, 12), timedelta(0)) == ist(2026, 4, 20, 12)
    with pytest.raises(ValueError, match="negative"):
        TR_CAL.add(ist(2026, 4, 20, 12), -H)


def test_add_across_new_year_with_holiday() -> None:
    # Wed 31 Dec 2025 17:00 + 2h: 1h Wed, Thu 1 Jan holiday, 1h Fri -> Fri 2 Jan 10:00.
    assert TR_CAL.add(ist(2025, 12, 31, 17), 2 * H) == ist(2026, 1, 2, 10)


def test_extra_closed_dates() -> None:
    cal = BusinessCalendar("Europe/Istanbul", "Mon-Fri 09:00-18:00", None, [date(2026, 4, 20)])
    assert cal.add(ist(2026, 4, 17, 17), 4 * H) == ist(2026, 4, 21, 12)


def test_long_durations_span_years() -> None:
    # 24/7 in UTC: 1000 days of business time is 1000 calendar days.
    cal = BusinessCalendar("UTC", "24/7")
    assert cal.add(utc(2026, 1, 1), timedelta(days=1000)) == utc(2028, 9, 27)


def test_calendar_without_open_time_raises_config_error() -> None:
    first = date(2026, 1, 1)
    closed = [first + timedelta(days=n) for n in range(6 * 366)]
    cal = BusinessCalendar("UTC", "Mon 09:00-10:00", extra_closed_dates=closed)
    with pytest.raises(ConfigError, match="no open time"):
        cal.add(utc(2026, 1, 1), H)
    with pytest.raises(ConfigError, match="no open time"):
        cal.next_open(utc(2026, 1, 1))


# --- DST ------------------------------------------------------------------------------------


def test_berlin_spring_forward_week() -> None:
    # Clocks go 02:00 CET -> 03:00 CEST on Sun 2026-03-29.
    assert BER_LUNCH.add(ber(2026, 3, 27, 17), 4 * H) == ber(2026, 3, 30, 12)
    assert BER_LUNCH.add(ber(2026, 3, 27, 17), 4 * H) == utc(2026, 3, 30, 10)
    # Sunday has 23 hours: 24h of 24/7 time from Sun 00:00 ends Mon 01:00 local.
    assert BER_24.add(ber(2026, 3, 29), 24 * H) == ber(2026, 3, 30, 1)
    assert BER_24.business_seconds(ber(2026, 3, 28), ber(2026, 3, 30)) == 47 * 3600
    # Opening hours inside the gap start when the clock first reads 02:30, i.e. at 03:00 CEST.
    gap = BusinessCalendar("Europe/Berlin", "Sun 02:30-04:00")
    assert gap.next_open(ber(2026, 3, 29)) == utc(2026, 3, 29, 1)
    assert gap.business_seconds(ber(2026, 3, 29), ber(2026, 3, 30)) == 3600
    assert gap.business_seconds(ber(2026, 3, 22), ber(2026, 3, 23)) == 90 * 60


def test_berlin_fall_back_day_has_25_hours() -> None:
    assert BER_24.business_seconds(ber(2026, 10, 25), ber(2026, 10, 26)) == 25 * 3600


def test_new_york_spring_forward() -> None:
    # Fri 2026-03-06 16:00 EST + 2h: 1h Fri, Mon 10:00 EDT (14:00Z, not 15:00Z).
    due = NYC_CAL.add(nyc(2026, 3, 6, 16), 2 * H)
    assert due == nyc(2026, 3, 9, 10) == utc(2026, 3, 9, 14)
    assert NYC_CAL.business_seconds(nyc(2026, 3, 6, 9), nyc(2026, 3, 9, 17)) == 16 * 3600
    assert NYC_24.business_seconds(nyc(2026, 3, 8), nyc(2026, 3, 9)) == 23 * 3600


def test_new_york_fall_back() -> None:
    # Fri 2026-10-30 16:00 EDT + 2h: Mon 2026-11-02 10:00 EST = 15:00Z.
    assert NYC_CAL.add(nyc(2026, 10, 30, 16), 2 * H) == utc(2026, 11, 2, 15)
    assert NYC_24.business_seconds(nyc(2026, 11, 1), nyc(2026, 11, 2)) == 25 * 3600
    # 01:00-02:00 happens twice: opening is the first 01:00 (EDT), closing 02:00 EST.
    twice = BusinessCalendar("America/New_York", "Sun 01:00-02:00")
    assert twice.next_open(nyc(2026, 11, 1)) == utc(2026, 11, 1, 5)
    assert twice.add(nyc(2026, 11, 1), 2 * H) == utc(2026, 11, 1, 7)


def test_midnight_gap_santiago() -> None:
    # Sun 2026-09-06: clocks jump 00:00 -> 01:00 (-04 -> -03), so midnight never happens.
    santiago = ZoneInfo("America/Santiago")
    all_week = BusinessCalendar("America/Santiago", "24/7")
    day = datetime(2026, 9, 6, tzinfo=santiago)
    assert all_week.business_seconds(day, day + timedelta(days=1)) == 23 * 3600
    early = BusinessCalendar("America/Santiago", "Sun 00:00-02:00")
    assert early.next_open(utc(2026, 9, 5)) == utc(2026, 9, 6, 4)  # 01:00 -03
    assert early.business_seconds(utc(2026, 9, 5), utc(2026, 9, 8)) == 3600


# --- business_seconds -----------------------------------------------------------------------


def test_business_seconds_across_weekend() -> None:
    # Fri 17:00-18:00 and Mon 09:00-10:00.
    assert TR_CAL.business_seconds(ist(2026, 4, 17, 17), ist(2026, 4, 20, 10)) == 7200
    assert TR_CAL.business_seconds(ist(2026, 4, 18), ist(2026, 4, 20)) == 0


def test_business_seconds_skips_holiday_and_lunch() -> None:
    assert TR_CAL.business_seconds(ist(2026, 4, 22, 17), ist(2026, 4, 24, 10)) == 7200
    # Mon 12:00-12:30 and 13:30-14:00.
    assert BER_LUNCH.business_seconds(ber(2026, 6, 15, 12), ber(2026, 6, 15, 14)) == 3600


def test_business_seconds_reversed_or_empty_is_zero() -> None:
    assert TR_CAL.business_seconds(ist(2026, 4, 20, 12), ist(2026, 4, 20, 10)) == 0
    assert TR_CAL.business_seconds(ist(2026, 4, 20, 12), ist(2026, 4, 20, 12)) == 0


def test_business_seconds_across_years() -> None:
    assert TR_CAL.business_seconds(ist(2025, 12, 31, 17), ist(2026, 1, 2, 10)) == 7200
    cal = BusinessCalendar("UTC", "24/7")
    assert cal.business_seconds(utc(2025, 1, 1), utc(2028, 1, 1)) == 1095 * 86400


def test_intervals_are_built_once_per_local_year(monkeypatch: pytest.MonkeyPatch) -> None:
    """The work is per day and cached: repeated KPI queries do not rebuild anything."""
    cal = BusinessCalendar("Europe/Istanbul", "Mon-Fri 09:00-18:00", "TR")
    built: list[int] = []
    original = cal._build_year

    def counting_build(number: int) -> object:
        built.append(number)
        return original(number)

    monkeypatch.setattr(cal, "_build_year", counting_build)
    for minute in range(2000):
        start = ist(2026, 3, 1) + minute * M
        cal.business_seconds(start, start + timedelta(days=30))
    assert built == [2026]


# --- properties -----------------------------------------------------------------------------

CALENDARS = [TR_CAL, BER_LUNCH, BER_24, NYC_CAL, NYC_24]
starts = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=60))


@settings(max_examples=300, deadline=None)
@given(cal=st.sampled_from(CALENDARS), start=starts, duration=durations, snap=st.booleans())
def test_add_and_business_seconds_are_exact_inverses(
    cal: BusinessCalendar, start: datetime, duration: timedelta, snap: bool
) -> None:
    if snap:  # exercise open starts, including exact opening instants
        start = cal.next_open(start)
    end = cal.add(start, duration)
    assert end > start
    assert abs(cal.business_seconds(start, end) - duration.total_seconds()) < 1e-6
    assert cal.is_open(end - timedelta(microseconds=1))


@settings(max_examples=100, deadline=None)
@given(cal=st.sampled_from(CALENDARS), a=starts, b=starts, c=starts)
def test_business_seconds_is_additive(
    cal: BusinessCalendar, a: datetime, b: datetime, c: datetime
) -> None:
    a, b, c = sorted((a, b, c))
    total = cal.business_seconds(a, b) + cal.business_seconds(b, c)
    assert abs(cal.business_seconds(a, c) - total) < 1e-6


@settings(max_examples=40, deadline=None)
@given(
    cal=st.sampled_from(CALENDARS),
    start_minute=st.integers(0, 3 * 365 * 1440),
    span_minutes=st.integers(0, 3 * 1440),
)
def test_business_seconds_matches_minute_by_minute_is_open(
    cal: BusinessCalendar, start_minute: int, span_minutes: int
) -> None:
    start = utc(2025, 1, 1) + start_minute * M
    open_minutes = sum(cal.is_open(start + n * M) for n in range(span_minutes))
    assert cal.business_seconds(start, start + span_minutes * M) == open_minutes * 60


# --- Turkish clock-time suffix --------------------------------------------------------------

# Hand-written dative forms of the spoken numbers ("on beşe", "kırk dokuza").
ONES_DATIVE = {
    1: "bire", 2: "ikiye", 3: "üçe", 4: "dörde", 5: "beşe",
    6: "altıya", 7: "yediye", 8: "sekize", 9: "dokuza",
}  # fmt: skip
TENS = {1: "on", 2: "yirmi", 3: "otuz", 4: "kırk", 5: "elli"}
TENS_DATIVE = {1: "ona", 2: "yirmiye", 3: "otuza", 4: "kırka", 5: "elliye"}


def spoken_dative(n: int) -> str:
    tens, ones = divmod(n, 10)
    if not ones:
        return TENS_DATIVE[tens]
    return f"{TENS[tens]} {ONES_DATIVE[ones]}" if tens else ONES_DATIVE[ones]


def suffix_of(spoken: str) -> str:
    """ "on ikiye" -> "'ye", "dörde" -> "'e": no Turkish number stem ends in y."""
    return "'" + ("y" if spoken[-2] == "y" else "") + spoken[-1]


@pytest.mark.parametrize("minute", range(1, 60))
def test_turkish_suffix_for_every_minute(minute: int) -> None:
    expected = suffix_of(spoken_dative(minute))
    assert turkish_time_dative(10, minute) == f"10:{minute:02d}{expected}"


@pytest.mark.parametrize("hour", range(1, 24))
def test_turkish_suffix_for_every_full_hour(hour: int) -> None:
    assert turkish_time_dative(hour, 0) == f"{hour:02d}:00{suffix_of(spoken_dative(hour))}"


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [
        (10, 0, "10:00'a"), (11, 0, "11:00'e"), (16, 30, "16:30'a"), (9, 0, "09:00'a"),
        (12, 0, "12:00'ye"), (13, 0, "13:00'e"), (14, 0, "14:00'e"), (15, 0, "15:00'e"),
        (17, 0, "17:00'ye"), (18, 0, "18:00'e"), (16, 0, "16:00'ya"), (0, 0, "00:00'a"),
        (9, 15, "09:15'e"), (9, 45, "09:45'e"), (9, 20, "09:20'ye"), (9, 40, "09:40'a"),
        (9, 50, "09:50'ye"), (9, 10, "09:10'a"), (9, 5, "09:05'e"), (12, 6, "12:06'ya"),
    ],
)  # fmt: skip
def test_turkish_suffix_examples(hour: int, minute: int, expected: str) -> None:
    assert turkish_time_dative(hour, minute) == expected


def test_turkish_number_words_and_harmony() -> None:
    assert [turkish_last_number_word(n) for n in (0, 6, 10, 16, 30, 59)] == [
        "sıfır", "altı", "on", "altı", "otuz", "dokuz",
    ]  # fmt: skip
    assert [turkish_dative_suffix(w) for w in ("on", "iki", "altı", "beş", "dört", "otuz")] == [
        "'a", "'ye", "'ya", "'e", "'e", "'a",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        turkish_last_number_word(60)


# --- describe_eta ---------------------------------------------------------------------------

NOW = ist(2026, 12, 3, 15)  # Thursday


@pytest.mark.parametrize(
    ("due", "duration", "english", "turkish"),
    [
        (ist(2026, 12, 3, 16, 30), 4 * H,
         "by today 16:30 (within 4 business hours)",
         "bugün 16:30'a kadar (4 iş saati içinde)"),
        (ist(2026, 12, 4, 11), 30 * M,
         "by tomorrow 11:00 (within 30 business minutes)",
         "yarın 11:00'e kadar (30 iş dakikası içinde)"),
        (ist(2026, 12, 7, 10), 4 * H,
         "by Monday 10:00 (within 4 business hours)",
         "Pazartesi 10:00'a kadar (4 iş saati içinde)"),
        (ist(2026, 12, 9, 12), H,
         "by Wednesday 12:00 (within 1 business hour)",
         "Çarşamba 12:00'ye kadar (1 iş saati içinde)"),
        (ist(2026, 12, 14, 10), 90 * M,
         "by Monday 14 December 10:00 (within 1.5 business hours)",
         "14 Aralık Pazartesi 10:00'a kadar (1,5 iş saati içinde)"),
        (ist(2026, 12, 10, 17), 135 * M,
         "by Thursday 10 December 17:00 (within 2 hours 15 minutes of business time)",
         "10 Aralık Perşembe 17:00'ye kadar (2 saat 15 dakikalık iş süresi içinde)"),
        (ist(2027, 1, 4, 9, 45), 48 * H,
         "by Monday 4 January 2027 09:45 (within 48 business hours)",
         "4 Ocak 2027 Pazartesi 09:45'e kadar (48 iş saati içinde)"),
        (ist(2026, 12, 3, 15, 2), timedelta(seconds=61),
         "by today 15:02 (within 2 business minutes)",
         "bugün 15:02'ye kadar (2 iş dakikası içinde)"),
    ],
)  # fmt: skip
def test_describe_eta(due: datetime, duration: timedelta, english: str, turkish: str) -> None:
    assert describe_eta(due, duration, "en", "Europe/Istanbul", NOW) == english
    assert describe_eta(due, duration, "tr", "Europe/Istanbul", NOW) == turkish


def test_describe_eta_uses_local_time_and_falls_back_to_english() -> None:
    due = utc(2026, 12, 4, 7)  # 10:00 in Istanbul, 08:00 in Berlin
    now = utc(2026, 12, 3, 12)
    assert describe_eta(due, M, "de", "Europe/Berlin", now) == (
        "by tomorrow 08:00 (within 1 business minute)"
    )
    assert describe_eta(due, 2 * H, "tr-TR", "Europe/Istanbul", now) == (
        "yarın 10:00'a kadar (2 iş saati içinde)"
    )
    # 23:30 UTC on the 3rd is already the 4th in Istanbul: "today", not "tomorrow".
    assert describe_eta(due, H, "en", "Europe/Istanbul", utc(2026, 12, 3, 23, 30)).startswith(
        "by today 10:00"
    )


def test_describe_eta_errors() -> None:
    with pytest.raises(ValueError, match="aware"):
        describe_eta(datetime(2026, 12, 4, 10), H, "en", "UTC", NOW)
    with pytest.raises(ConfigError, match="'Nowhere/Land'"):
        describe_eta(NOW, H, "en", "Nowhere/Land", NOW)


def test_local_year_cache_follows_the_local_new_year() -> None:
    """The last year's bounds are cached: instants on both sides of local midnight on
    1 January (21:00 UTC in Istanbul) must still get their own local year."""
    cal = BusinessCalendar("Europe/Istanbul", "24/7")
    before, after = utc(2025, 12, 31, 20, 59), utc(2025, 12, 31, 21, 0)
    for at, year in [(before, 2025), (after, 2026), (before, 2025), (utc(2026, 6, 1), 2026),
                     (utc(2024, 12, 31, 21), 2025), (utc(2024, 12, 31, 20, 59), 2024)]:
        assert cal._local_year(calendar_us(at)) == year, at
    assert cal.business_seconds(before, after) == 60


def calendar_us(at: datetime) -> int:
    from maild.calendar import _to_us

    return _to_us(at)
