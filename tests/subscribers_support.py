"""A subscriber that records what it is handed (the subscriber and store tests share it)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from schemas.event import CaseEvent
from schemas.frame import Coordinates


class Recorder:
    """A subscriber that records what it got; raises on the calls numbered in ``fail_on``,
    sleeps ``sleep_s`` per call, and notes when it first succeeded after failing."""

    def __init__(self, fail_on: set[int] | None = None, fail_from: int | None = None,
                 sleep_s: float = 0.0) -> None:
        self.fail_on, self.fail_from, self.sleep_s = fail_on or set(), fail_from, sleep_s
        self.calls = 0
        self.ids: list[str] = []
        self.sizes: list[int] = []
        self.failed_at: list[float] = []
        self.recovered_at: float | None = None

    def __call__(self, events: Sequence[CaseEvent],
                 origins: Sequence[Coordinates | None]) -> None:
        self.calls += 1
        if self.calls in self.fail_on or (self.fail_from and self.calls >= self.fail_from):
            self.failed_at.append(time.monotonic())
            raise RuntimeError(f"downstream refused batch {self.calls}")
        time.sleep(self.sleep_s)
        if self.failed_at and self.recovered_at is None:
            self.recovered_at = time.monotonic()
        assert len(events) == len(origins)
        self.ids.extend(e.event_id for e in events)
        self.sizes.append(len(events))
