"""Working calendars: business time between moments, hand-computed and as properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alerts.calendar import CalendarSettings, WorkCalendar, parse_weekdays, to_us
from alerts.duration import parse_duration
from alerts.errors import AlertConfigError, DateRangeError

AMS = ZoneInfo("Europe/Amsterdam")
NL = WorkCalendar(country="NL")  # Europe/Amsterdam, Mon-Fri, 09:00-17:30
HOUR = 3600.0


def ams(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A moment on Amsterdam's wall clock."""
    return datetime(year, month, day, hour, minute, tzinfo=AMS)


def test_a_working_day_is_the_opening_hours() -> None:
    """A business day lasts from opening to closing: 09:00-17:30 is 8.5 hours."""
    assert NL.day_seconds == 8.5 * HOUR
    assert WorkCalendar(opens=time(8), closes=time(16)).day_seconds == 8 * HOUR


def test_same_day_counts_only_opening_hours() -> None:
    """Within one working day the time counts as is; before opening and after closing do not."""
    assert NL.between(ams(2026, 11, 24, 10, 0), ams(2026, 11, 24, 15, 30)) == 5.5 * HOUR
    assert NL.between(ams(2026, 11, 24, 7, 0), ams(2026, 11, 24, 20, 0)) == 8.5 * HOUR
    assert NL.between(ams(2026, 11, 24, 18, 0), ams(2026, 11, 24, 23, 0)) == 0


def test_overnight_skips_the_closed_hours() -> None:
    """Tuesday 16:00 to Wednesday 10:00 is 1.5 + 1 = 2.5 business hours, not 18."""
    assert NL.between(ams(2026, 11, 24, 16, 0), ams(2026, 11, 25, 10, 0)) == 2.5 * HOUR


def test_weekend_counts_nothing() -> None:
    """Friday 16:00 to Monday 10:00 is 2.5 business hours; Saturday to Sunday is none."""
    assert NL.between(ams(2026, 11, 20, 16, 0), ams(2026, 11, 23, 10, 0)) == 2.5 * HOUR
    assert NL.between(ams(2026, 11, 21, 10, 0), ams(2026, 11, 22, 16, 0)) == 0
    week = NL.between(ams(2026, 11, 16, 9, 0), ams(2026, 11, 23, 9, 0))
    assert week == 5 * 8.5 * HOUR


def test_kings_day_is_closed_in_the_netherlands_only_with_country() -> None:
    """King's Day (Monday 2026-04-27) is not worked with country NL; without a country it is."""
    friday, tuesday = ams(2026, 4, 24, 16, 0), ams(2026, 4, 28, 10, 0)
    assert NL.between(friday, tuesday) == 2.5 * HOUR
    assert WorkCalendar().between(friday, tuesday) == (2.5 + 8.5) * HOUR
    assert not NL.is_business_day(date(2026, 4, 27))
    assert WorkCalendar().is_business_day(date(2026, 4, 27))


def test_holidays_of_a_subdivision() -> None:
    """Epiphany (2026-01-06) is a holiday in Bavaria, not in Berlin."""
    bavaria = WorkCalendar(timezone="Europe/Berlin", country="DE", subdivision="BY")
    berlin = WorkCalendar(timezone="Europe/Berlin", country="DE", subdivision="BE")
    assert not bavaria.is_business_day(date(2026, 1, 6))
    assert berlin.is_business_day(date(2026, 1, 6))


def test_spring_dst_change_keeps_local_opening_hours() -> None:
    """Over the night clocks go forward (2026-03-29) Monday opens at 09:00 CEST (07:00 UTC):
    Friday 16:00 CET to Monday 10:00 CEST is 2.5 hours, and a week is 5 full days."""
    assert NL.between(ams(2026, 3, 27, 16, 0), ams(2026, 3, 30, 10, 0)) == 2.5 * HOUR
    monday_utc = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert NL.between(monday_utc, monday_utc + timedelta(hours=1)) == HOUR
    assert NL.between(ams(2026, 3, 23, 9, 0), ams(2026, 3, 30, 9, 0)) == 5 * 8.5 * HOUR


def test_autumn_dst_change_keeps_local_opening_hours() -> None:
    """Before clocks go back (2026-10-25) Friday opens at 07:00 UTC (09:00 CEST); after it,
    Monday opens at 08:00 UTC (09:00 CET), and a week across the change is 5 full days."""
    friday, monday = datetime(2026, 10, 23, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC)
    assert NL.between(friday.replace(hour=6), friday.replace(hour=7)) == 0
    assert NL.between(friday.replace(hour=7), friday.replace(hour=8)) == HOUR
    assert NL.between(monday.replace(hour=7), monday.replace(hour=8)) == 0
    assert NL.between(monday.replace(hour=8), monday.replace(hour=9)) == HOUR
    assert NL.between(ams(2026, 10, 19, 9, 0), ams(2026, 10, 26, 9, 0)) == 5 * 8.5 * HOUR


def test_other_time_zone_and_workweek() -> None:
    """A Sunday-Thursday week in Asia/Dubai: Friday is closed, Sunday is worked."""
    dubai = CalendarSettings(timezone="Asia/Dubai", weekdays="Sun-Thu", opens="08:00",
                             closes="16:00").calendar()
    zone = ZoneInfo("Asia/Dubai")
    assert dubai.between(datetime(2026, 11, 27, 8, tzinfo=zone), datetime(2026, 11, 27, 16, tzinfo=zone)) == 0
    assert dubai.between(datetime(2026, 11, 29, 8, tzinfo=zone),
                         datetime(2026, 11, 29, 12, tzinfo=zone)) == 4 * HOUR


def test_vectorised_pairs_and_reversed_pairs() -> None:
    """Arrays of pairs are counted element-wise; end before start counts 0."""
    starts = np.array([to_us(ams(2026, 11, 24, 10)), to_us(ams(2026, 11, 20, 16)),
                       to_us(ams(2026, 11, 25, 10))], dtype=np.int64)
    ends = np.array([to_us(ams(2026, 11, 24, 12)), to_us(ams(2026, 11, 23, 10)),
                     to_us(ams(2026, 11, 24, 10))], dtype=np.int64)
    assert NL.business_seconds(starts, ends).tolist() == [2 * HOUR, 2.5 * HOUR, 0.0]
    empty = np.array([], dtype=np.int64)
    assert NL.business_seconds(empty, empty).shape == (0,)


def test_durations_in_working_seconds() -> None:
    """Business days count whole working days, business hours and wall units as they are."""
    assert NL.seconds(parse_duration("5 business days")) == 5 * 8.5 * HOUR
    assert NL.seconds(parse_duration("36 business hours")) == 36 * HOUR
    assert NL.seconds(parse_duration("36 hours")) == 36 * HOUR
    assert NL.seconds(parse_duration("2 days")) == 48 * HOUR
    assert NL.business_days(NL.seconds(parse_duration("3 business days"))) == 3


def test_add_business_days_skips_weekends_and_holidays() -> None:
    """One business day after Friday 2026-04-24 is Tuesday (King's Day and the weekend
    skipped); one before a Saturday is the Friday; 0 rolls a closed day forward."""
    assert NL.add_business_days(date(2026, 4, 24), 1) == date(2026, 4, 28)
    assert NL.add_business_days(date(2026, 4, 25), 1) == date(2026, 4, 28)
    assert NL.add_business_days(date(2026, 4, 28), -1) == date(2026, 4, 24)
    assert NL.add_business_days(date(2026, 4, 25), -1) == date(2026, 4, 24)
    assert NL.add_business_days(date(2026, 4, 25), 0) == date(2026, 4, 28)
    assert NL.add_business_days(date(2026, 12, 24), 1) == date(2026, 12, 28)  # Christmas
    assert NL.count_business_days(date(2026, 4, 20), date(2026, 5, 4)) == 9


def test_business_days_before_year_one_are_a_date_range_error() -> None:
    """Counting business days back past 0001-01-01 (or on past 9999) raises DateRangeError
    saying so, never a number in place of a date."""
    with pytest.raises(DateRangeError, match="-5 business days from 0001-01-03: outside the years"):
        WorkCalendar().add_business_days(date(1, 1, 3), -5)
    with pytest.raises(DateRangeError, match="outside the years 1 to 9999"):
        WorkCalendar().add_business_days(date(9999, 12, 29), 5)


def test_business_day_of_uses_the_local_date() -> None:
    """23:30 UTC on 24 November is already 25 November in Amsterdam."""
    assert NL.business_day_of(datetime(2026, 11, 24, 23, 30, tzinfo=UTC)) == date(2026, 11, 25)
    with pytest.raises(ValueError, match="no time zone"):
        NL.business_day_of(datetime(2026, 11, 24, 23, 30))


def test_weekday_spellings() -> None:
    """Weekdays are read from ranges, lists, full names, numbers and numpy weekmasks."""
    assert parse_weekdays("Mon-Fri") == (0, 1, 2, 3, 4)
    assert parse_weekdays("sun-thu") == (0, 1, 2, 3, 6)
    assert parse_weekdays("Monday, Wednesday") == (0, 2)
    assert parse_weekdays("1111100") == (0, 1, 2, 3, 4)
    assert parse_weekdays(["sat", 0]) == (0, 5)
    with pytest.raises(AlertConfigError, match="'funday' is not a weekday"):
        parse_weekdays("Mon-Funday")


def test_settings_build_the_calendar() -> None:
    """Config-style settings (strings) become the calendar they describe."""
    calendar = CalendarSettings(weekdays="Mon-Thu", opens="08:30", closes="17:00",
                                country="nl").calendar()
    assert calendar == WorkCalendar(weekdays=(0, 1, 2, 3), opens=time(8, 30), closes=time(17),
                                    country="NL")


@pytest.mark.parametrize(("values", "message"), [
    ({"timezone": "Europe/Amsterdan"}, "unknown time zone 'Europe/Amsterdan'"),
    ({"country": "XX"}, "unknown country code 'XX'"),
    ({"country": "DE", "subdivision": "ZZ"}, "unknown subdivision 'ZZ' of DE"),
    ({"subdivision": "BY"}, "subdivision 'BY' needs a country"),
    ({"opens": "18:00"}, "opens 18:00 must be before closes 17:30"),
    ({"opens": "09:00", "closes": "09:00"}, "must be before closes"),
    ({"weekdays": ""}, "name at least one working day"),
    ({"hours": "9-5"}, "Extra inputs are not permitted"),
])
def test_bad_settings_say_what_is_wrong(values: dict[str, str], message: str) -> None:
    """A bad time zone, country, subdivision, hours, weekdays or key is refused, saying why."""
    with pytest.raises(ValidationError, match=message):
        CalendarSettings.model_validate(values)


def test_bad_calendar_is_refused_directly() -> None:
    """Building a WorkCalendar by hand checks it too (AlertConfigError, a ValueError)."""
    with pytest.raises(AlertConfigError, match="unknown time zone"):
        WorkCalendar(timezone="Nowhere/Town")
    with pytest.raises(AlertConfigError, match="must be before closes"):
        WorkCalendar(opens=time(18), closes=time(9))
    with pytest.raises(AlertConfigError, match="weekdays"):
        WorkCalendar(weekdays=())


def _oracle(calendar: WorkCalendar, start: datetime, end: datetime) -> float:
    """Reference: intersect [start, end] with each day's opening hours, one day at a time."""
    zone = ZoneInfo(calendar.timezone)
    closed = holidays.country_holidays(calendar.country) if calendar.country else {}
    total = 0.0
    day = start.astimezone(zone).date() - timedelta(days=1)
    while day <= end.astimezone(zone).date():
        if day.weekday() in calendar.weekdays and day not in closed:
            opens = datetime.combine(day, calendar.opens, tzinfo=zone)
            closes = datetime.combine(day, calendar.closes, tzinfo=zone)
            overlap = (min(end, closes) - max(start, opens)).total_seconds()
            total += max(overlap, 0.0)
        day += timedelta(days=1)
    return total


_MOMENTS = st.integers(min_value=to_us(datetime(2025, 12, 1, tzinfo=UTC)),
                       max_value=to_us(datetime(2027, 2, 1, tzinfo=UTC)))


@settings(max_examples=200, deadline=None)
@given(st.lists(_MOMENTS, min_size=3, max_size=3))
def test_business_time_is_additive_and_at_most_wall_time(moments: list[int]) -> None:
    """For a <= b <= c: (a->b) + (b->c) == (a->c), and business time never exceeds wall time."""
    a, b, c = sorted(moments)
    starts = np.array([a, b, a], dtype=np.int64)
    ends = np.array([b, c, c], dtype=np.int64)
    ab, bc, ac = NL.business_seconds(starts, ends)
    assert ab + bc == pytest.approx(ac, abs=1e-6)
    assert 0 <= ac <= (c - a) / 1e6
    assert 0 <= ab <= (b - a) / 1e6


@settings(max_examples=60, deadline=None)
@given(_MOMENTS, st.integers(min_value=0, max_value=40 * 86_400_000_000))
def test_business_time_equals_a_day_by_day_count(start: int, span: int) -> None:
    """The vectorised count equals intersecting each day's opening hours one by one."""
    a = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=start)
    b = a + timedelta(microseconds=span)
    assert NL.between(a, b) == pytest.approx(_oracle(NL, a, b), abs=1e-6)


def _wall_clock_us(zone: ZoneInfo, moment_us: int) -> int:
    """Reference: one UTC moment on the zone's local wall clock, by Python's zoneinfo."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    local = (epoch + timedelta(microseconds=moment_us)).astimezone(zone).replace(tzinfo=None)
    return (local - epoch.replace(tzinfo=None)) // timedelta(microseconds=1)


def _clock_changes(zone: ZoneInfo, first_us: int, last_us: int) -> list[int]:
    """Every instant in the span where the zone's UTC offset changes (to the microsecond)."""
    hour = 3_600_000_000
    found = []
    for h in range(first_us - first_us % hour, last_us, hour):
        if _wall_clock_us(zone, h) - h != _wall_clock_us(zone, h + hour) - (h + hour):
            lo, hi = h, h + hour  # the offset at lo is the old one, at hi the new one
            while hi - lo > 1:
                mid = (lo + hi) // 2
                old = _wall_clock_us(zone, mid) - mid == _wall_clock_us(zone, lo) - lo
                lo, hi = (mid, hi) if old else (lo, mid)
            found.append(hi)
    return found


@pytest.mark.parametrize(("zone", "first", "years"), [
    ("Europe/Amsterdam", datetime(2024, 1, 1), 3),
    ("Australia/Lord_Howe", datetime(2024, 1, 1), 3),  # summer time is 30 minutes ahead
    ("America/St_Johns", datetime(2024, 1, 1), 3),  # UTC-3:30, changes at local 02:00
    ("Asia/Kolkata", datetime(2024, 1, 1), 3),  # UTC+5:30, no changes
    ("Europe/Dublin", datetime(1914, 1, 1), 6),  # Dublin Mean Time, -0:25:21, to 1916
    ("Europe/Moscow", datetime(1917, 1, 1), 6),  # +2:31:19, double summer time, +3, +2
])
def test_many_moments_get_their_local_time_around_every_clock_change(
        zone: str, first: datetime, years: int) -> None:
    """60,000 moments over a few years (converted through the hours of their span), and the
    microseconds either side of each clock change, get the wall-clock time zoneinfo gives each."""
    tz = ZoneInfo(zone)
    lo = to_us(first.replace(tzinfo=UTC))
    hi = lo + years * 365 * 86_400_000_000
    changes = _clock_changes(tz, lo, hi)
    assert zone == "Asia/Kolkata" or len(changes) >= years
    edges = [c + d for c in changes for d in (-1, 0, 1)]
    moments = np.concatenate((np.random.default_rng(7).integers(lo, hi, 60_000),
                              np.array(edges, dtype=np.int64)))
    local = WorkCalendar(timezone=zone).local_us(moments)
    assert local.tolist() == [_wall_clock_us(tz, int(m)) for m in moments]
