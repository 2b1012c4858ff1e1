"""Publish case events to a Kafka topic as JSON, keyed by case id (replay and simulate use it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ingest.transport import Sink
from schemas.event import CaseEvent

PACE_STEP_S = 5.0
"""Longest single sleep while pacing (a long gap between events is waited in steps)."""


class Clock(Protocol):
    """Where pacing reads the time and waits (tests give ``ingest.memory.ManualClock``)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``time.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def encode(event: CaseEvent) -> bytes:
    """The event as the JSON message Backlight's consumer reads."""
    return json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False).encode()


def publish(events: Iterable[CaseEvent], sink: Sink, topic: str, *, speed: float | None = None,
            progress: Callable[[int], object] | None = None,
            clock: Clock = SYSTEM_CLOCK) -> int:
    """Send ``events`` to ``topic`` and wait for the broker's acknowledgement; return the count.

    With ``speed`` the events are sent in time order, paced by their own timestamps divided by
    ``speed`` (3600 plays an hour of the log in a second); without it, as fast as possible in
    the order given. ``clock`` is where pacing waits (the real one unless a test gives its own).
    """
    if speed is not None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        events = sorted(events, key=lambda e: e.time_us)
    sent = 0
    first_us: int | None = None
    started = clock.monotonic()
    for event in events:
        if speed is not None:
            first_us = event.time_us if first_us is None else first_us
            at = (event.time_us - first_us) / 1e6 / speed
            while (due := at - (clock.monotonic() - started)) > 0:
                clock.sleep(min(due, PACE_STEP_S))
        sink.send(topic, encode(event), key=event.case_id.encode())
        sent += 1
        if progress is not None and sent % 1000 == 0:
            progress(1000)
    sink.flush()
    if progress is not None and sent % 1000:
        progress(sent % 1000)
    return sent
