"""When the weekly digest is due: ``[alerts.digest]`` and the week a moment falls in. Pure.

The digest goes out weekly at ``day`` / ``time`` (default Monday 08:00) on the local wall clock
of a time zone: ``timezone`` when configured, else the calendar zone of the processes the
escalation route covers when they share one, else ``[alerts.calendar]``'s. It covers the seven
days before its scheduled moment (local days: a week across a DST change is 167 or 169 hours).
A worker queues it at its first round at or after the scheduled moment, and up to ``catch_up``
later (a worker down for longer leaves that week to ``backlight alerts digest``); its
notification id is derived from the route, the channel and the scheduled moment, so every
worker and every restart queues the same id and the outbox keeps one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator

from alerts.routing import RouteSettings

DAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class DigestSettings(BaseModel):
    """``[alerts.digest]``: the weekly digest to each escalation route."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    day: str = "monday"
    """The weekday it goes out: ``monday`` ... ``sunday``."""
    time: str = "08:00"
    """The local time it goes out, ``HH:MM`` (24 hours)."""
    timezone: str | None = None
    """The zone of ``time``; default: the route's processes' calendar zone."""
    catch_up_hours: float = 24.0
    """How late a worker may still queue a week's digest (a worker down longer skips it)."""
    max_items: int = 10
    """Items listed per section before "and N more"."""

    @field_validator("day")
    @classmethod
    def _day(cls, value: str) -> str:
        day = value.strip().lower()
        found = [d for d in DAYS if d.startswith(day)] if len(day) >= 3 else []
        if len(found) != 1:
            raise ValueError(f"{value!r} is not a weekday: write e.g. \"monday\"")
        return found[0]

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        try:
            parsed = time.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a time of day: write e.g. \"08:00\"") from None
        return parsed.strftime("%H:%M")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}: use an IANA name such as "
                                 "\"Europe/Amsterdam\"") from None
        return value

    @field_validator("catch_up_hours")
    @classmethod
    def _catch_up(cls, value: float) -> float:
        if not 0 < value <= 24 * 7:
            raise ValueError("must be more than 0 and at most a week (168 hours)")
        return value

    @field_validator("max_items")
    @classmethod
    def _items(cls, value: int) -> int:
        if not 1 <= value <= 50:
            raise ValueError("must be between 1 and 50")
        return value


@dataclass(frozen=True)
class Week:
    """One digest's week: it is scheduled at ``end`` and covers ``[start, end)``."""

    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """The local dates it covers, e.g. ``2026-10-26 to 2026-11-01``."""
        last = (self.end - timedelta(seconds=1)).date()
        return f"{self.start.date().isoformat()} to {last.isoformat()}"


def scheduled_week(now: datetime, settings: DigestSettings, zone: str) -> Week:
    """The latest week whose digest is scheduled at or before ``now`` (aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = ZoneInfo(settings.timezone or zone)
    local = now.astimezone(tz)
    at = time.fromisoformat(settings.time)
    back = (local.weekday() - DAYS.index(settings.day)) % 7
    day = local.date() - timedelta(days=back)
    end = datetime.combine(day, at, tz)
    if end > local:
        end = datetime.combine(day - timedelta(days=7), at, tz)
    start = datetime.combine(end.date() - timedelta(days=7), at, tz)
    return Week(start, end)


def due(now: datetime, settings: DigestSettings, zone: str) -> Week | None:
    """The week whose digest a worker queues now: scheduled at or before ``now``, no more than
    ``catch_up_hours`` ago; None when disabled or not due."""
    if not settings.enabled:
        return None
    week = scheduled_week(now, settings, zone)
    if now - week.end > timedelta(hours=settings.catch_up_hours):
        return None
    return week


def route_name(route: RouteSettings) -> str:
    """A route's name in the digest and its ids: what it matches and where it sends."""
    return (f"{route.process} / {route.rule} / {route.min_severity.value}+ -> "
            f"{', '.join(route.channels)}")


def digest_id(route: RouteSettings, channel: str, week: Week) -> str:
    """The digest's notification id: one per route, channel and week, whoever queues it."""
    text = "\x1f".join(("digest", route_name(route), channel, week.end.isoformat()))
    return hashlib.sha256(text.encode()).hexdigest()
