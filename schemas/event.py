"""The case event: one step of one case, as Backlight stores it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

LIFECYCLES = ("start", "complete", "schedule")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CaseEvent(msgspec.Struct, frozen=True, gc=False):
    """A validated case event. Times are UTC microseconds since the epoch.

    Immutable and hashable. A msgspec Struct rather than a frozen dataclass: the consumer
    builds one per message, and a frozen dataclass costs about ten times as much to construct
    (its ``__init__`` goes through ``object.__setattr__`` per field). Its fields are only
    strings, ints and None, so it never takes part in a reference cycle (``gc=False``).
    Change a field with ``msgspec.structs.replace``.
    """

    event_id: str
    process: str
    case_id: str
    activity: str
    time_us: int
    lifecycle: str = "complete"
    resource: str | None = None
    team: str | None = None
    attributes: str | None = None
    """The event's attributes as canonical JSON (sorted keys), or None when it has none."""

    @property
    def timestamp(self) -> datetime:
        """The event time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time_us / 1_000_000, tz=UTC)

    def to_json(self) -> dict[str, Any]:
        """The event in the published schema (as `backlight replay` and `simulate` send it)."""
        out: dict[str, Any] = {
            "event_id": self.event_id, "process": self.process, "case_id": self.case_id,
            "activity": self.activity, "timestamp": format_time(self.time_us),
            "lifecycle": self.lifecycle,
        }
        if self.resource is not None:
            out["resource"] = self.resource
        if self.team is not None:
            out["team"] = self.team
        if self.attributes is not None:
            out["attributes"] = json.loads(self.attributes)
        return out


def to_time_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_time_us(time_us: int) -> datetime | None:
    """The UTC datetime of ``time_us`` microseconds since the epoch, or None when Python
    cannot hold it (beyond year 9999 or before year 1): a conversion that never raises."""
    try:
        return _EPOCH + timedelta(microseconds=time_us)
    except OverflowError:
        return None


def format_time(time_us: int) -> str:
    """RFC 3339 in UTC with microseconds, e.g. ``2026-03-04T08:15:00.000000+00:00``."""
    seconds, micros = divmod(time_us, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)
    return moment.isoformat(timespec="microseconds")
