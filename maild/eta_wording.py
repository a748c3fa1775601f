"""Customer-facing wording of an ETA promise ("by Monday 10:00 (within 4 business hours)").

What it is for: turning a due instant computed by `maild.calendar` into one
short phrase in the customer's language (English and Turkish; any other
language falls back to English).

What it must not do: read the clock (the caller passes `now`), compute
business time, or depend on the process locale (names come from tables here).

Wording rules:

* the day is "today" / "tomorrow", the weekday name when the due date is 2-6
  days ahead, else the full date ("Monday 14 December", with the year only
  when it differs from `now`'s); times are 24-hour local "HH:MM";
* the duration is rounded up to whole minutes and said as whole hours
  ("4 business hours"), minutes under an hour ("30 business minutes"), half
  hours as a decimal ("1.5 business hours" / "1,5 iş saati"), and anything
  else as hours and minutes ("2 hours 15 minutes of business time" /
  "2 saat 15 dakikalık iş süresi");
* Turkish puts the dative suffix on the clock time, chosen by vowel harmony
  from the last number word as it is read aloud: minutes if non-zero, else
  hours ("10:00'a" = "ona", "11:00'e" = "on bire", "12:00'ye" = "on ikiye",
  "16:30'a" = "on altı otuza").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from maild.errors import ConfigError

EN_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
TR_DAYS = ("Pazartesi", "Salı", "Çarşamba", "Perşembe", "Cuma", "Cumartesi", "Pazar")
TR_MONTHS = (
    "Ocak", "Şubat", "Mart", "Nisan", "Mayıs", "Haziran",
    "Temmuz", "Ağustos", "Eylül", "Ekim", "Kasım", "Aralık",
)  # fmt: skip

TR_ONES = ("sıfır", "bir", "iki", "üç", "dört", "beş", "altı", "yedi", "sekiz", "dokuz")
TR_TENS = ("", "on", "yirmi", "otuz", "kırk", "elli")
_TR_BACK_VOWELS = frozenset("aıou")
_TR_FRONT_VOWELS = frozenset("eiöü")


def turkish_last_number_word(number: int) -> str:
    """The last word spoken when reading 0..59 aloud: 16 "on altı" -> "altı"."""
    if not 0 <= number <= 59:
        raise ValueError(f"clock number out of range: {number}")
    tens, ones = divmod(number, 10)
    if ones or not tens:
        return TR_ONES[ones]
    return TR_TENS[tens]


def turkish_dative_suffix(word: str) -> str:
    """Apostrophe dative for a number written in digits but read as `word`.

    Two-way vowel harmony on the word's last vowel (a ı o u -> a; e i ö ü -> e),
    with the buffer consonant y when the word ends in a vowel: "on" -> "'a",
    "iki" -> "'ye", "altı" -> "'ya", "beş" -> "'e".
    """
    vowels = [c for c in word.lower() if c in _TR_BACK_VOWELS | _TR_FRONT_VOWELS]
    if not vowels:
        raise ValueError(f"no vowel in {word!r}")
    ending = "a" if vowels[-1] in _TR_BACK_VOWELS else "e"
    buffer = "y" if word[-1].lower() in _TR_BACK_VOWELS | _TR_FRONT_VOWELS else ""
    return f"'{buffer}{ending}"


def turkish_time_dative(hour: int, minute: int) -> str:
    """ "10:00'a", "11:00'e", "16:30'a": the clock time with its dative suffix."""
    word = turkish_last_number_word(minute or hour)
    return f"{hour:02d}:{minute:02d}{turkish_dative_suffix(word)}"


def describe_eta(due: datetime, duration: timedelta, language: str, tz: str, now: datetime) -> str:
    """ "by Monday 10:00 (within 4 business hours)" in `language` ("tr" or English)."""
    if due.tzinfo is None or now.tzinfo is None:
        raise ValueError("describe_eta needs timezone-aware datetimes")
    zone = _zone(tz)
    local_due, local_now = due.astimezone(zone), now.astimezone(zone)
    days_ahead = (local_due.date() - local_now.date()).days
    minutes = max(0, -(-duration // timedelta(minutes=1)))
    same_year = local_due.year == local_now.year
    if language.strip().lower().replace("_", "-").split("-")[0] == "tr":
        day = _tr_day(local_due, days_ahead, same_year)
        clock = turkish_time_dative(local_due.hour, local_due.minute)
        return f"{day} {clock} kadar ({_tr_duration(minutes)} içinde)"
    day = _en_day(local_due, days_ahead, same_year)
    return f"by {day} {local_due:%H:%M} (within {_en_duration(minutes)})"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown timezone {name!r}") from exc


def _en_day(due: datetime, days_ahead: int, same_year: bool) -> str:
    if days_ahead in (0, 1):
        return ("today", "tomorrow")[days_ahead]
    weekday = EN_DAYS[due.weekday()]
    if 2 <= days_ahead <= 6:
        return weekday
    year = "" if same_year else f" {due.year}"
    return f"{weekday} {due.day} {EN_MONTHS[due.month - 1]}{year}"


def _tr_day(due: datetime, days_ahead: int, same_year: bool) -> str:
    if days_ahead in (0, 1):
        return ("bugün", "yarın")[days_ahead]
    weekday = TR_DAYS[due.weekday()]
    if 2 <= days_ahead <= 6:
        return weekday
    year = "" if same_year else f" {due.year}"
    return f"{due.day} {TR_MONTHS[due.month - 1]}{year} {weekday}"


def _en_duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} business minute{'' if rest == 1 else 's'}"
    if not rest:
        return f"{hours} business hour{'' if hours == 1 else 's'}"
    if rest == 30:
        return f"{hours}.5 business hours"
    return (
        f"{hours} hour{'' if hours == 1 else 's'} {rest} minute{'' if rest == 1 else 's'} "
        "of business time"
    )


def _tr_duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} iş dakikası"
    if not rest:
        return f"{hours} iş saati"
    if rest == 30:
        return f"{hours},5 iş saati"
    return f"{hours} saat {rest} dakikalık iş süresi"
