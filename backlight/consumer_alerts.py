"""``backlight consume --alerts``: evaluate the rules and deliver from the consumer's process.

The consumer only marks that new events were stored (a subscriber that cannot fail or block);
a thread of its own evaluates once the consumer has been quiet for ``settle_s`` (caught up),
at most every ``every_s``, and delivers from the outbox. A slow or failing chat endpoint
therefore never stalls or stops ingest: the worst it does is keep this thread busy, and what
it did not take stays in the outbox for the next round (or for ``backlight alerts run``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import structlog

from backlight import alerting
from backlight.config import Settings
from ingest.subscribers import Subscription
from schemas.event import CaseEvent
from schemas.frame import Coordinates

log = structlog.stdlib.get_logger("backlight.alerts.consumer")


class ConsumerAlerts:
    """The alert rounds that run beside a consumer."""

    def __init__(self, settings: Settings, every_s: float, settle_s: float = 1.0) -> None:
        self.settings = settings
        self.every_s = every_s
        self.settle_s = settle_s
        self.rounds = 0
        self._stored_at = 0.0
        self._pending = False
        """Events were stored since the last evaluation started."""
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)

    def subscription(self) -> Subscription:
        """What the consumer feeds: it only notes that something new was stored."""
        return Subscription("alerts", self._stored, start="end")

    def _stored(self, events: Sequence[CaseEvent], origins: Sequence[Coordinates | None]) -> None:
        self._stored_at = time.monotonic()
        self._pending = True
        self._dirty.set()

    def start(self) -> ConsumerAlerts:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """End the loop; events stored since the last round get one last evaluation (queued in
        the outbox, delivered by the next `alerts run`)."""
        self._stop.set()
        self._dirty.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("alert round still running at exit", waited_s=timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            quiet = time.monotonic() - self._stored_at
            if quiet < self.settle_s and not self._stop.is_set():
                self._stop.wait(self.settle_s - quiet)  # not caught up yet
                continue
            if self._stop.is_set():
                break
            self._dirty.clear()
            self._pending = False
            self._round(deliver=True)
            self._stop.wait(self.every_s)
        if self._pending:
            self._round(deliver=False)

    def _round(self, deliver: bool) -> None:
        try:
            report = alerting.evaluate(self.settings)
            delivered = alerting.deliver_outbox(self.settings) if deliver else None
        except Exception as exc:  # never let an alert round take the consumer down
            log.error("alert round failed", error=str(exc))
            return
        self.rounds += 1
        log.info("alert round", alerts=len(report.alerts), changes=len(report.changes),
                 sent=delivered.sent if delivered else 0,
                 failed=delivered.failed if delivered else 0)
