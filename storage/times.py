"""How the alert state and the outbox keep times: integer microseconds since the epoch (UTC),
exact both ways (schemas/event.py's conversions), and the wall clock leases run on."""

from __future__ import annotations

import time
from datetime import datetime

from schemas.event import from_time_us, to_time_us
from storage.errors import AlertStateError


def stored_us(moment: datetime) -> int:
    """An aware datetime as stored; a naive one is refused (its instant is unknown)."""
    if moment.tzinfo is None:
        raise AlertStateError(f"time {moment.isoformat()} has no time zone")
    return to_time_us(moment)


def stored_time(us: int) -> datetime:
    """A stored time back as an aware UTC datetime."""
    moment = from_time_us(us)
    if moment is None:
        raise AlertStateError(f"stored time {us} µs is beyond what a datetime can hold")
    return moment


def stored_time_opt(us: int | None) -> datetime | None:
    """``stored_time`` of a time that may be absent."""
    return None if us is None else stored_time(us)


def wall_us() -> int:
    """The wall clock in microseconds: leases and claims expire on it, whatever clock
    evaluation and delivery run on."""
    return time.time_ns() // 1000
