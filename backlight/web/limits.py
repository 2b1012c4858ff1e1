"""Bounds on what any client, signed in or not, can make the server do.

- ``AttemptLimiter``: failed sign-ins per client (its address, through the trusted proxy rules
  of ``auth.client_address``) in a sliding minute; beyond the limit ``/login`` answers 429 with
  ``Retry-After`` until the oldest failure leaves the minute. An attempt counts as a failure
  from the moment it is admitted until it succeeds, so parallel attempts cannot all pass the
  check before the first is counted. Memory is bounded: at most ``max_clients`` addresses are
  remembered (the least recently seen are forgotten first).
- ``quantise``: map thresholds snapped to the sliders' 5% steps, so distinct URLs map to at
  most 20 x 21 maps per process, window, view and data version (``backlight.web.maps`` caches
  them).
- ``RenderGate``: at most ``limit`` maps laid out at once (each is a Graphviz ``dot`` process);
  a request beyond that waits up to ``wait_s`` for its turn, and at most ``max_waiting`` wait:
  the others get ``RenderBusy`` at once (503 with ``Retry-After``). Nobody can start an
  unbounded number of ``dot`` processes, nor hold every server thread waiting for one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TypeVar

from schemas.errors import BacklightError

T = TypeVar("T")
STEP = 0.05
"""The map thresholds' step: the sliders' (5%)."""
WINDOW_S = 60.0


class AttemptLimiter:
    """Failures per key in a sliding window of ``window_s``; ``limit`` of them allowed."""

    def __init__(self, limit: int, window_s: float = WINDOW_S, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def attempt(self, key: str) -> int | None:
        """Admit an attempt of ``key`` and count it as a failure until ``succeeded`` says
        otherwise (counted up front, so a burst of parallel attempts cannot all slip past the
        check); or, when ``key`` has ``limit`` failures in the window, the seconds until it may
        try again (at least 1) and nothing is counted."""
        now = self._clock()
        with self._lock:
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= self.limit:
                return max(1, math.ceil(failures[0] + self.window_s - now))
            if failures is None:
                failures = self._failures[key] = deque()
            failures.append(now)
            self._failures.move_to_end(key)
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)
            return None

    def succeeded(self, key: str) -> None:
        """The attempt admitted last for ``key`` succeeded: it is not a failure."""
        with self._lock:
            failures = self._failures.get(key)
            if failures:
                failures.pop()
                if not failures:
                    del self._failures[key]

    def failures(self, key: str) -> int:
        """Failed attempts of ``key`` in the window."""
        with self._lock:
            failures = self._recent(key, self._clock())
            return 0 if failures is None else len(failures)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures


def quantise(value: float, low: float) -> float:
    """``value`` snapped to the nearest multiple of ``STEP`` within ``[low, 1]``."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    steps = round(min(1.0, max(low, value)) / STEP)
    return round(max(low, steps * STEP), 2)


class RenderBusy(BacklightError):
    """Every map render slot stayed taken for as long as a request may wait (HTTP 503)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RenderGate:
    """At most ``limit`` renders at once; ``wait_s`` of waiting for a turn, ``max_waiting``
    requests waiting at most. ``renders`` and ``refused`` count what it did (and call the
    hooks ``on_render`` / ``on_refused``, e.g. Prometheus counters)."""

    def __init__(self, limit: int, wait_s: float, max_waiting: int | None = None) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.max_waiting = 8 * limit if max_waiting is None else max_waiting
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._waiting = 0
        self.renders = 0
        self.refused = 0
        self.on_render: Callable[[], object] = lambda: None
        self.on_refused: Callable[[], object] = lambda: None

    def run(self, render: Callable[[], T]) -> T:
        """``render()`` in a free slot, or ``RenderBusy`` when none frees up in time."""
        with self._lock:
            queue_full = self._waiting >= self.max_waiting
            if not queue_full:
                self._waiting += 1
        got = False
        if not queue_full:
            try:
                got = self._slots.acquire(timeout=self.wait_s)
            finally:
                with self._lock:
                    self._waiting -= 1
        if not got:
            with self._lock:
                self.refused += 1
            self.on_refused()
            raise RenderBusy(f"the server is drawing {self.limit} map(s) already; "
                             "retry in a moment", max(1, math.ceil(self.wait_s)))
        try:
            with self._lock:
                self.renders += 1
            self.on_render()
            return render()
        finally:
            self._slots.release()
