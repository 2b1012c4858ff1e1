"""What the consumer tells its observer (``on_batch``): a ``BatchReport`` per batch, its lag.

The observer (e.g. ``backlight.metrics.Metrics.observe_batch``) gets a report after each
handled batch, and lag-only reports while idle; it runs in the poll loop, so it must be quick,
and an exception it raises is logged and otherwise ignored. Only with an observer does the
consumer look up its lag per partition (``Source.lags``), at most every ``lag_interval_s``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping

import structlog

from ingest.consumer_stats import BatchObserver, BatchReport
from ingest.decode_policy import Prepared
from ingest.group_offsets import Partition
from ingest.transport import Source

log = structlog.stdlib.get_logger("backlight.consume")


def batch_report(prepared: Prepared, new: list[bool], seconds: float,
                 lags: Mapping[Partition, int] | None) -> BatchReport:
    """The report of a written batch whose events were ``new`` or not (a replay)."""
    stored: Counter[str] = Counter()
    valid: Counter[str] = Counter()
    for origin, fresh in zip(prepared.origins, new, strict=True):
        topic = origin.topic if origin else ""
        valid[topic] += 1
        stored[topic] += fresh
    return BatchReport(
        consumed=dict(Counter(m.topic for m in prepared.batch)),
        stored={t: n for t, n in stored.items() if n},
        duplicates={t: valid[t] - stored[t] for t in valid if valid[t] > stored[t]},
        dead_letters=dict(prepared.bad_by_topic), seconds=seconds,
        store_seconds=prepared.store_seconds, lags=lags)


class BatchReports:
    """Reports to ``on_batch`` (none without one), looking up ``source``'s lag for them."""

    def __init__(self, source: Source, on_batch: BatchObserver | None,
                 lag_interval_s: float = 1.0) -> None:
        self.source = source
        self.on_batch = on_batch
        self.lag_interval_s = lag_interval_s
        self._lag_looked_at = float("-inf")

    @property
    def observed(self) -> bool:
        return self.on_batch is not None

    def batch(self, prepared: Prepared, new: list[bool]) -> None:
        """Report a written and finished batch."""
        if self.on_batch is not None:
            self._observe(batch_report(prepared, new, time.perf_counter() - prepared.started,
                                       self.lags()))

    def lags(self, force: bool = False) -> dict[Partition, int] | None:
        """The lag per partition, for the observer: None without one, when the last look was
        less than ``lag_interval_s`` ago (unless ``force``), or when the source cannot say."""
        now = time.monotonic()
        if self.on_batch is None or (not force and now - self._lag_looked_at < self.lag_interval_s):
            return None
        self._lag_looked_at = now
        try:
            return dict(self.source.lags())
        except Exception as exc:  # a metric must never stop ingest
            log.warning(f"could not look up the consumer lag: {exc!r}")
            return None

    def idle(self, exiting: bool) -> int | None:
        """The total lag while idle (None when not looked up); with an observer, reported per
        partition (always when about to exit, else at most every ``lag_interval_s``)."""
        if self.on_batch is None:
            return self.source.lag()
        lags = self.lags(force=exiting)
        if lags is not None:
            self._observe(BatchReport(lags=lags))
            return sum(lags.values())
        return self.source.lag() if exiting else None

    def _observe(self, report: BatchReport) -> None:
        assert self.on_batch is not None
        try:
            self.on_batch(report)
        except Exception:  # the observer's failure is not ingest's
            log.exception("the batch observer failed; ingest goes on")
