"""Waiting out an outage: the same backoff and the same logging for the store and the DLQ.

The consumer never gives up on a batch whose store or dead-letter topic is away (a database
restarting, a broker down): it tries again after a growing wait (``RETRY_S``, then its last
value repeated) until it succeeds or the consumer is stopped. The first failure is logged at
once and then at most once a minute, with the number of attempts so far; the recovery is
logged too, so an operator sees how long it lasted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

RETRY_S = (0.5, 1.0, 2.0, 5.0)
"""Waits before each new attempt (then the last, repeated)."""
LOG_EVERY_S = 60.0
"""At most one warning per outage per this many seconds."""
Log = structlog.stdlib.BoundLogger
"""Where an outage is logged."""


class Retrying:
    """One outage of one action (``what``: "storing the batch"), as seen by the loop retrying it."""

    def __init__(self, what: str, stop: threading.Event, log: Log,
                 waits: tuple[float, ...] = RETRY_S, log_every_s: float = LOG_EVERY_S) -> None:
        self.what, self.stop, self.log = what, stop, log
        self.waits, self.log_every_s = waits, log_every_s
        self.attempts = 0
        self._started = 0.0
        self._logged = float("-inf")

    def failed(self, error: BaseException | str, **fields: Any) -> bool:
        """Count a failed attempt, log it (rate-limited) and wait before the next one; False
        when the consumer was stopped meanwhile (give up the batch: nothing is committed)."""
        now = time.monotonic()
        if not self.attempts:
            self._started = now
        wait = self.waits[min(self.attempts, len(self.waits) - 1)]
        self.attempts += 1
        if now - self._logged >= self.log_every_s:
            self._logged = now
            self.log.warning(f"{self.what} failed; trying again", **fields, attempts=self.attempts,
                             failing_for_s=round(now - self._started, 1), retry_in_s=wait,
                             error=str(error))
        return not self.stop.wait(wait)

    def succeeded(self) -> None:
        """Log the recovery, if there was an outage."""
        if self.attempts:
            self.log.warning(f"{self.what} succeeded again", attempts=self.attempts,
                             failed_for_s=round(time.monotonic() - self._started, 1))
