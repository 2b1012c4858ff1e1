"""Working calendars: business time between moments, per process (weekdays, hours, holidays).

Business time is counted on the local wall clock of the calendar's time zone (so a working day
is always ``closes - opens`` long, also in the weeks DST changes): every UTC moment is turned
into local time (polars, IANA rules), then

    business(a, b) = busday_count(day(a), day(b)) * day_seconds + within(b) - within(a)

where ``within(t)`` is the working time already done on t's local day (0 on a non-working day)
and ``busday_count`` is numpy's count of working days in ``[day(a), day(b))`` with the weekmask
and the country's public holidays (the ``holidays`` package). The formula is a difference of one
cumulative function, so it is additive (a->b + b->c == a->c) and never exceeds wall time.
(Clocks change at night, outside opening hours; a calendar open during the repeated hour of
the autumn change counts that local hour once.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from alerts.duration import Duration
from alerts.errors import AlertConfigError, DateRangeError
from schemas.event import to_time_us

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# numpy and polars are imported in the functions that count, not here: the config validates
# calendars (time zone, weekdays, country) through this module, and validating needs neither
# (``backlight consume`` validates its config but never counts business time).

_DAY_US: Final = 86_400_000_000
_HOUR_US: Final = 3_600_000_000
_GRID_MIN: Final = 4096
"""From this many moments on, ``local_us`` converts through the hours of their span."""
_DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=256)
def _holidays_of_year(country: str, subdivision: str | None, year: int) -> tuple[date, ...]:
    """The public holidays of one country (and subdivision) in one year, sorted."""
    found = holidays_lib.country_holidays(country, subdiv=subdivision, years=year)
    return tuple(sorted(day for day in found if day.year == year))


@lru_cache(maxsize=64)
def _busdaycalendar(weekmask: tuple[bool, ...], country: str | None, subdivision: str | None,
                    first_year: int, last_year: int) -> np.busdaycalendar:
    """numpy's working-day calendar with the holidays of the given years."""
    import numpy as np
    days: list[date] = []
    if country is not None:
        for year in range(first_year, last_year + 1):
            days.extend(_holidays_of_year(country, subdivision, year))
    return np.busdaycalendar(weekmask=list(weekmask), holidays=np.array(days, dtype="datetime64[D]"))


def _years(days: npt.NDArray[np.datetime64]) -> tuple[int, int]:
    """The first and last calendar year of some days (rounded out to whole decades, so that
    similar calls share one cached calendar)."""
    import numpy as np
    if days.size == 0:
        return 2000, 2000
    first = int(days.min().astype("datetime64[Y]").astype(np.int64)) + 1970
    last = int(days.max().astype("datetime64[Y]").astype(np.int64)) + 1970
    return first - first % 10, last - last % 10 + 9


def _check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise AlertConfigError(f"unknown time zone {name!r}; use an IANA name such as "
                               "'Europe/Amsterdam' or 'UTC'") from None


@lru_cache(maxsize=256)
def _country_problem(country: str, subdivision: str | None) -> str | None:
    """Why ``holidays`` cannot give this country's (subdivision's) holidays, or None."""
    try:
        known = holidays_lib.country_holidays(country)
    except NotImplementedError:
        return (f"unknown country code {country!r} for public holidays; use an ISO 3166 code "
                "such as 'NL', 'DE' or 'GB'")
    if subdivision is not None:
        try:
            holidays_lib.country_holidays(country, subdiv=subdivision)
        except NotImplementedError:
            names = ", ".join(list(known.subdivisions)[:12]) or "none"
            return f"unknown subdivision {subdivision!r} of {country} (known: {names})"
    return None


def _check_country(country: str | None, subdivision: str | None) -> None:
    if country is None:
        if subdivision is not None:
            raise AlertConfigError(f"subdivision {subdivision!r} needs a country")
        return
    problem = _country_problem(country, subdivision)
    if problem is not None:
        raise AlertConfigError(problem)


@dataclass(frozen=True)
class WorkCalendar:
    """Working days and hours in a time zone, minus a country's public holidays."""

    timezone: str = "Europe/Amsterdam"
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Monday = 0."""
    opens: time = time(9, 0)
    closes: time = time(17, 30)
    country: str | None = None
    """ISO 3166 code for public holidays (``NL``, ``DE``, ``GB``...), None for none."""
    subdivision: str | None = None

    def __post_init__(self) -> None:
        """Refuse a calendar that cannot count (raises ``AlertConfigError``)."""
        _check_timezone(self.timezone)
        if not self.weekdays or any(not 0 <= day <= 6 for day in self.weekdays):
            raise AlertConfigError(f"weekdays {self.weekdays!r}: need at least one of 0 (Monday) "
                                   "to 6 (Sunday)")
        if self.opens.tzinfo is not None or self.closes.tzinfo is not None:
            raise AlertConfigError("opens and closes are local times, without a time zone")
        if self.opens >= self.closes:
            raise AlertConfigError(f"opens {self.opens:%H:%M} must be before closes {self.closes:%H:%M}")
        _check_country(self.country, self.subdivision)

    @property
    def weekmask(self) -> tuple[bool, ...]:
        """Working day flags, Monday first (numpy's weekmask)."""
        return tuple(day in self.weekdays for day in range(7))

    @property
    def day_seconds(self) -> float:
        """Working seconds in one business day."""
        return float(_time_us(self.closes) - _time_us(self.opens)) / 1e6

    def holidays(self, first_year: int, last_year: int) -> tuple[date, ...]:
        """The public holidays counted as closed in those years (weekend ones included)."""
        if self.country is None:
            return ()
        return tuple(day for year in range(first_year, last_year + 1)
                     for day in _holidays_of_year(self.country, self.subdivision, year))

    def local_us(self, moments_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """UTC microseconds as microseconds of the local wall clock (DST-correct).

        Many moments over a short span (an event log) are converted through the hours they
        fall in: the UTC offset at every whole hour of the span, and for each moment its hour's
        offset when the offset at the next hour is the same (no clock change inside the hour;
        two changes within one hour that cancel out exist in no time zone); moments in an hour
        with a change are converted one by one. Both ways give what ``_convert`` gives."""
        import numpy as np
        moments = np.asarray(moments_us, dtype=np.int64)
        if moments.size < _GRID_MIN:
            return self._convert(moments)
        first, last = int(moments.min()) // _HOUR_US, int(moments.max()) // _HOUR_US + 1
        if last - first >= moments.size:  # sparse: fewer moments than hours
            return self._convert(moments)
        hours = np.arange(first, last + 1, dtype=np.int64) * _HOUR_US
        offsets = self._convert(hours) - hours
        at = moments // _HOUR_US - first
        local = moments + offsets[at]
        changes = offsets[at] != offsets[at + 1]
        if changes.any():
            local[changes] = self._convert(moments[changes])
        return local

    def _convert(self, moments_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``local_us`` one moment at a time, by polars' time zone rules."""
        import numpy as np
        import polars as pl
        series = pl.Series(np.asarray(moments_us, dtype=np.int64)).cast(pl.Datetime("us", "UTC"))
        local = series.dt.convert_time_zone(self.timezone).dt.replace_time_zone(None)
        return local.cast(pl.Int64).to_numpy().astype(np.int64, copy=False)

    def _calendar_for(self, *days: npt.NDArray[np.datetime64]) -> np.busdaycalendar:
        spans = [_years(d) for d in days if d.size]
        first = min((s[0] for s in spans), default=2000)
        last = max((s[1] for s in spans), default=2000)
        return _busdaycalendar(self.weekmask, self.country, self.subdivision, first, last)

    def _local_once(self, moments_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``local_us``, converting a constant array (a window's start, "now") only once."""
        import numpy as np
        if moments_us.size > 1 and moments_us.min() == moments_us.max():
            return np.full(moments_us.size, self.local_us(moments_us[:1])[0], dtype=np.int64)
        return self.local_us(moments_us)

    def business_seconds(self, start_us: npt.NDArray[np.int64], end_us: npt.NDArray[np.int64],
                         local: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
                         ) -> npt.NDArray[np.float64]:
        """Working seconds between each pair of UTC-microsecond moments (0 where end <= start).

        ``local``: the same moments already as ``local_us`` (start, end), when the caller has
        them; converting to local time is most of the cost, and a table of consecutive events
        needs each moment converted once, not once as an end and again as a start."""
        import numpy as np
        start = np.asarray(start_us, dtype=np.int64)
        end = np.asarray(end_us, dtype=np.int64)
        start, end = np.broadcast_arrays(start, end)
        shape = start.shape
        start, end = start.ravel(), end.ravel()
        if start.size == 0:
            return np.zeros(shape, dtype=np.float64)
        if local is None:
            local_a, local_b = self._local_once(start), self._local_once(end)
        else:
            pair = np.broadcast_arrays(np.asarray(local[0], dtype=np.int64),
                                       np.asarray(local[1], dtype=np.int64))
            local_a, local_b = pair[0].ravel(), pair[1].ravel()
        day_a = np.floor_divide(local_a, _DAY_US)
        day_b = np.floor_divide(local_b, _DAY_US)
        dates_a, dates_b = day_a.astype("datetime64[D]"), day_b.astype("datetime64[D]")
        cal = self._calendar_for(dates_a, dates_b)
        whole = np.busday_count(dates_a, dates_b, busdaycal=cal).astype(np.float64)
        within_a = self._within(local_a - day_a * _DAY_US, np.is_busday(dates_a, busdaycal=cal))
        within_b = self._within(local_b - day_b * _DAY_US, np.is_busday(dates_b, busdaycal=cal))
        total = whole * self.day_seconds + (within_b - within_a)
        total = np.where(end > start, np.maximum(total, 0.0), 0.0)
        return total.reshape(shape)

    def _within(self, time_of_day_us: npt.NDArray[np.int64],
                working: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        """Working seconds done on a day by a local time of day (0 on a non-working day)."""
        import numpy as np
        opens, closes = _time_us(self.opens), _time_us(self.closes)
        done = (np.clip(time_of_day_us, opens, closes) - opens).astype(np.float64) / 1e6
        return np.where(working, done, 0.0)

    def between(self, start: datetime, end: datetime) -> float:
        """Working seconds between two aware moments (0 when end <= start)."""
        import numpy as np
        seconds = self.business_seconds(np.array([to_us(start)]), np.array([to_us(end)]))
        return float(seconds[0])

    def seconds(self, duration: Duration) -> float:
        """A duration in working seconds (wall-clock units count as they are)."""
        if duration.unit == "business_days":
            return duration.amount * self.day_seconds
        if duration.unit == "business_hours":
            return duration.amount * 3600.0
        return duration.wall_seconds

    def business_days(self, seconds: float) -> float:
        """Working seconds as business days."""
        return seconds / self.day_seconds

    def is_business_day(self, day: date) -> bool:
        """True when ``day`` is a working weekday and not a public holiday."""
        import numpy as np
        days = np.array([day], dtype="datetime64[D]")
        return bool(np.is_busday(days, busdaycal=self._calendar_for(days))[0])

    def add_business_days(self, day: date, days: int) -> date:
        """The business day ``days`` after (or before, negative) ``day``: counting starts from
        ``day`` itself, so one business day after a Saturday is the Monday and one before it is
        the Friday; 0 gives ``day`` if it is a business day, else the next one."""
        import numpy as np
        start = np.array([day], dtype="datetime64[D]")
        reach = start + np.array([days * 7 + (30 if days >= 0 else -30)], dtype="timedelta64[D]")
        cal = self._calendar_for(start, reach)
        if days > 0:
            moved = np.busday_offset(start, days, roll="backward", busdaycal=cal)
        else:
            moved = np.busday_offset(start, days, roll="forward", busdaycal=cal)
        result: object = moved[0].astype(object)  # an int when outside Python's dates
        if not isinstance(result, date):
            raise DateRangeError(f"{days} business days from {day.isoformat()}: outside the "
                                 "years 1 to 9999")
        return result

    def count_business_days(self, start: date, end: date) -> int:
        """Business days in ``[start, end)`` (negative when end is before start)."""
        import numpy as np
        a = np.array([start], dtype="datetime64[D]")
        b = np.array([end], dtype="datetime64[D]")
        return int(np.busday_count(a, b, busdaycal=self._calendar_for(a, b))[0])

    def business_day_of(self, moment: datetime) -> date:
        """The local calendar date of a moment."""
        if moment.tzinfo is None:
            raise ValueError(f"{moment.isoformat()} has no time zone; moments must be aware")
        return moment.astimezone(ZoneInfo(self.timezone)).date()


def _time_us(moment: time) -> int:
    return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1_000_000 + moment.microsecond


def to_us(moment: datetime) -> int:
    """An aware moment as UTC microseconds since the epoch (the event store's unit)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; moments must be aware")
    return to_time_us(moment)


_RANGE = re.compile(r"^([a-z]+)\s*-\s*([a-z]+)$")
_FULL_NAMES: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_weekdays(value: str | Iterable[str | int]) -> tuple[int, ...]:
    """``"Mon-Fri"``, ``"Sun-Thu"``, ``"Mon,Tue,Thu"``, ``"1111100"`` or ``["mon", 2]`` as
    sorted weekday numbers (Monday = 0); raises ``AlertConfigError`` naming the bad part."""
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"[01]{7}", text):
            days = [i for i, flag in enumerate(text) if flag == "1"]
        else:
            days = []
            for part in filter(None, (p.strip() for p in text.split(","))):
                days.extend(_weekday_range(part, value))
    else:
        days = [_weekday(item, value) for item in value]
    if not days:
        raise AlertConfigError(f"weekdays {value!r}: name at least one working day")
    return tuple(sorted(set(days)))


def _weekday_range(part: str, whole: object) -> list[int]:
    """``"fri-mon"`` as [4, 5, 6, 0]; a single name as itself."""
    match = _RANGE.match(part)
    if match is None:
        return [_weekday(part, whole)]
    first, last = _weekday(match.group(1), whole), _weekday(match.group(2), whole)
    return [(first + i) % 7 for i in range((last - first) % 7 + 1)]


def _weekday(item: str | int, whole: object) -> int:
    """A weekday name (``mon``/``monday``) or number (0..6) as its number."""
    if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 6:
        return item
    if isinstance(item, str):
        name = item.strip().lower()
        for names in (_DAY_NAMES, _FULL_NAMES):
            if name in names:
                return names.index(name)
    raise AlertConfigError(f"weekdays {whole!r}: {item!r} is not a weekday (Mon..Sun, or 0..6 "
                           "with Monday = 0)")


class CalendarSettings(BaseModel):
    """A process's ``[processes.calendar]`` (or ``[alerts.calendar]``): when work is done."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    timezone: str = "Europe/Amsterdam"
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Working days: ``"Mon-Fri"``, ``"Sun-Thu"``, ``"Mon,Wed"``, ``"1111100"`` or a list."""
    opens: time = time(9, 0)
    closes: time = time(17, 30)
    country: str | None = None
    """ISO 3166 code whose public holidays are closed (``"NL"``); None for no holidays."""
    subdivision: str | None = None
    """A region of the country with its own holidays (``"BY"`` in ``DE``)."""

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        _check_timezone(value)
        return value

    @field_validator("weekdays", mode="before")
    @classmethod
    def _weekdays(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, str | list | tuple):
            return parse_weekdays(value)
        raise AlertConfigError(f"weekdays {value!r}: write e.g. 'Mon-Fri' or ['Mon', 'Tue']")

    @field_validator("country", mode="before")
    @classmethod
    def _country(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            _check_country(value, None)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CalendarSettings:
        if self.opens >= self.closes:
            raise AlertConfigError(f"opens {self.opens:%H:%M} must be before closes {self.closes:%H:%M}")
        _check_country(self.country, self.subdivision)
        return self

    def calendar(self) -> WorkCalendar:
        """The working calendar these settings describe."""
        return WorkCalendar(timezone=self.timezone, weekdays=self.weekdays, opens=self.opens,
                            closes=self.closes, country=self.country, subdivision=self.subdivision)
