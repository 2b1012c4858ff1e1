"""Which stored events have a usable time: the read side's guard against what was stored before
decode refused out-of-range timestamps.

A time before 1970-01-01 or later than now plus ``MAX_FUTURE_SKEW`` is not a real event time
(a default date, a typo, a clock gone wrong), and some cannot even be shown: Python's datetime
ends with year 9999, pandas' nanoseconds in 2262. Every reader (``backlight mine``, the web app,
the alert rules) reads a process's events through ``within_range``: such events are left out of
every window, figure, map and export, and counted, so their owner is told how many there are.
Windows then count back from the latest event that is no later than now plus the skew; one
event stored at 9999-12-30 no longer hides the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import polars as pl

from schemas.event import to_time_us

MAX_FUTURE_SKEW: Final = timedelta(days=1)
"""How far past the reader's clock an event's time may be and still count (the read side's one
definition; decode refuses such events with its own per-source setting)."""
OUT_OF_RANGE: Final = "before 1970-01-01 or more than a day later than now"
"""What an out-of-range time is, in words (keep it in step with MAX_FUTURE_SKEW)."""
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest event time that counts."""
_EPOCH_US: Final = 0


@dataclass(frozen=True)
class InRange:
    """A process's events with a usable time, and how many were left out for their time."""

    frame: pl.DataFrame
    out_of_range: int


def latest_allowed(now: datetime) -> datetime:
    """The latest event time that counts when the clock reads ``now`` (aware)."""
    return now + MAX_FUTURE_SKEW


def within_range(frame: pl.DataFrame, now: datetime | None = None) -> InRange:
    """The rows of an event frame whose ``timestamp`` is in [1970-01-01, now + skew], and the
    number of the others. Compared as integer microseconds: no row is converted to a Python
    or pandas time, whatever its value."""
    now = now or datetime.now(UTC)
    if frame.is_empty():
        return InRange(frame, 0)
    upper = to_time_us(latest_allowed(now))
    moment = pl.col("timestamp").dt.epoch("us")
    keep = moment.is_between(_EPOCH_US, upper, closed="both").fill_null(False)
    bad = int(frame.select((~keep).sum()).item())
    return InRange(frame.filter(keep) if bad else frame, bad)


