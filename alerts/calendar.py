"""Working calendars: business time between moments, per process (weekdays, hours, holidays).

SKELETON: the calendar helper implements this module (vectorised with numpy's busday
functions and the ``holidays`` package). The signatures below are the contract other modules use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np
import numpy.typing as npt

from alerts.duration import Duration


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

    @property
    def day_seconds(self) -> float:
        """Working seconds in one business day."""
        raise NotImplementedError

    def business_seconds(self, start_us: npt.NDArray[np.int64],
                         end_us: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Working seconds between each pair of UTC-microsecond moments (0 where end <= start)."""
        raise NotImplementedError

    def seconds(self, duration: Duration) -> float:
        """A duration in working seconds (wall-clock units count as they are)."""
        raise NotImplementedError

    def business_days(self, seconds: float) -> float:
        """Working seconds as business days."""
        return seconds / self.day_seconds

    def add_business_days(self, day: date, days: int) -> date:
        """The business day ``days`` after (or before, negative) ``day``."""
        raise NotImplementedError

    def business_day_of(self, moment: datetime) -> date:
        """The local calendar date of a moment."""
        raise NotImplementedError
