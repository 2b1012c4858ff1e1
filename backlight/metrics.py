"""Prometheus metrics for ``/metrics``, each ``Metrics`` in a registry of its own.

Two sources feed it:

- the consumer, through ``Metrics.observe_batch`` (its ``on_batch`` hook, called in the poll
  loop after each batch): events consumed, stored and duplicate per topic, dead letters per
  topic and reason, the batch latency, and the lag per partition;
- the store file, read at scrape time by ``StoreCollector`` (plain read-only SQL through
  ``ingest.sqlite.connect``, the one SQLite library of the process): events per process, the
  alerts by process, status and severity, the alerts fired (FIRING changes in the history),
  the notifications sent and given up per channel, and the outbox depth (pending deliveries).

These last counters are totals the file keeps, so they survive restarts and count what the
CLI, ``alerts run`` and other processes did too.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.consumer import BatchReport
from ingest.sqlite import connect
from ingest.store import EventStore
from schemas.errors import BacklightError

log = logging.getLogger("backlight.metrics")
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The consumer's counters and lag, plus the store's figures at scrape time.

    ``consuming`` is True once a consumer in this process reports here (``consumer_started``);
    ``/readyz`` then waits until its lag is known. ``consumer_running`` is False again once it
    returned; ``consumer_error`` says why it stopped, if it failed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter("backlight_events_consumed", "Messages polled from Kafka "
                                "(valid, malformed and tombstones), per topic", ["topic"],
                                registry=r)
        self.stored = Counter("backlight_events_stored", "Events newly stored, per source topic",
                              ["topic"], registry=r)
        self.duplicates = Counter("backlight_events_duplicate", "Valid events the store "
                                  "already had (a replay), per source topic", ["topic"],
                                  registry=r)
        self.dead_letters = Counter("backlight_dead_letters", "Messages sent to <topic>.dlq, "
                                    "per source topic and reason", ["topic", "reason"],
                                    registry=r)
        self.lag = Gauge("backlight_consumer_lag", "Messages not consumed yet, per partition "
                         "(as of the consumer's last look)", ["topic", "partition"], registry=r)
        self.batch_seconds = Histogram("backlight_batch_seconds", "Time from a polled batch to "
                                       "its offsets committed (decode, dead letters, store)",
                                       buckets=BATCH_BUCKETS, registry=r)
        self._lock = threading.Lock()
        self._lags: dict[tuple[str, int], int] | None = None
        self._store: StoreCollector | None = None
        self.consuming = False
        self.consumer_running = False
        self.consumer_error: str | None = None

    # --- the consumer -----------------------------------------------------------------------

    def observe_batch(self, report: BatchReport) -> None:
        """The consumer's ``on_batch`` hook: count the batch, keep its lag per partition."""
        for topic, n in report.consumed.items():
            self.consumed.labels(topic).inc(n)
        for topic, n in report.stored.items():
            self.stored.labels(topic).inc(n)
        for topic, n in report.duplicates.items():
            self.duplicates.labels(topic).inc(n)
        for (topic, reason), n in report.dead_letters.items():
            self.dead_letters.labels(topic, reason).inc(n)
        if report.seconds is not None:
            self.batch_seconds.observe(report.seconds)
        if report.lags is not None:
            self._set_lags(report.lags)

    def _set_lags(self, lags: Mapping[tuple[str, int], int]) -> None:
        with self._lock:
            gone = set(self._lags or ()) - set(lags)
            self._lags = dict(lags)
        for topic, partition in gone:
            self.lag.remove(topic, str(partition))
        for (topic, partition), n in lags.items():
            self.lag.labels(topic, str(partition)).set(n)

    def consumer_started(self) -> None:
        """A consumer in this process reports here from now on (its lag is not known yet)."""
        with self._lock:
            self.consuming, self.consumer_error, self._lags = True, None, None
            self.consumer_running = True

    def consumer_stopped(self, error: BaseException | None = None) -> None:
        """The consumer returned (its last lag stays known) or failed with ``error``."""
        with self._lock:
            self.consumer_running = False
            if error is not None:
                self.consumer_error = f"{type(error).__name__}: {error}"

    @property
    def lag_known(self) -> bool:
        """Whether the consumer has reported its lag per partition at least once."""
        with self._lock:
            return self._lags is not None

    @property
    def lag_total(self) -> int | None:
        """Messages not consumed yet over all partitions (None until the consumer says)."""
        with self._lock:
            return None if self._lags is None else sum(self._lags.values())

    def lags(self) -> dict[tuple[str, int], int]:
        """The last reported lag per (topic, partition) (empty until reported)."""
        with self._lock:
            return dict(self._lags or {})

    # --- the store --------------------------------------------------------------------------

    def watch_store(self, url: str, store: EventStore | None = None) -> None:
        """Read the figures of the store ``url`` names at each scrape (events per process
        from ``store`` when given). Watching another store replaces the previous one."""
        collector = StoreCollector(url, store)
        with self._lock:
            previous, self._store = self._store, collector
        if previous is not None:
            self.registry.unregister(previous)
        self.registry.register(collector)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (content type
        ``prometheus_client.CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


def _path(url: str) -> Path:
    if not url.startswith("sqlite:///") or not url[len("sqlite:///"):]:
        raise BacklightError("metrics read SQLite stores only: sqlite:///path/to/file.db")
    return Path(url[len("sqlite:///"):])


class StoreCollector(Collector):
    """The store file's figures, read fresh at each scrape on a short-lived read-only
    connection. ``backlight_store_up`` is 0 (and the rest absent) when it cannot be read."""

    def __init__(self, url: str, store: EventStore | None = None) -> None:
        self.path = _path(url)
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("backlight_store_up", "1 when the store answered this scrape")
        try:
            families = list(self._read())
        except (BacklightError, sqlite3.Error, OSError) as exc:
            log.warning("metrics: the store cannot be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterable[Metric]:
        if not self.path.is_file():
            raise BacklightError(f"no store file at {self.path}")
        with closing(connect(self.path)) as db:
            db.execute("PRAGMA query_only = 1")
            tables = {name for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            yield self._events(db, tables)
            yield from self._alerts(db, tables)
            yield from self._outbox(db, tables)

    def _events(self, db: sqlite3.Connection, tables: set[str]) -> Metric:
        family = GaugeMetricFamily("backlight_store_events", "Events in the store, per process",
                                   labels=["process"])
        if self.store is not None:
            counts = [(c.process, c.events) for c in self.store.counts()]
        elif "events" in tables:
            counts = db.execute("SELECT process, COUNT(*) FROM events GROUP BY process").fetchall()
        else:
            counts = []
        for process, n in counts:
            family.add_metric([process], n)
        return family

    @staticmethod
    def _alerts(db: sqlite3.Connection, tables: set[str]) -> Iterator[Metric]:
        current = GaugeMetricFamily("backlight_alerts", "Stored alerts, per process, status "
                                    "(pending, firing, resolved) and severity",
                                    labels=["process", "status", "severity"])
        fired = CounterMetricFamily("backlight_alerts_fired", "Times an alert started firing "
                                    "(FIRING changes in the alert history), per process and rule",
                                    labels=["process", "rule"])
        if "alert_states" in tables:
            for process, status, severity, n in db.execute(
                    "SELECT process, status, json_extract(body, '$.severity'), COUNT(*)"
                    " FROM alert_states GROUP BY 1, 2, 3"):
                current.add_metric([process, status, str(severity)], n)
        if "alert_history" in tables:
            for process, rule, n in db.execute(
                    "SELECT json_extract(body, '$.process'), json_extract(body, '$.rule'),"
                    " COUNT(*) FROM alert_history WHERE change = 'firing' GROUP BY 1, 2"):
                fired.add_metric([str(process), str(rule)], n)
        yield current
        yield fired

    @staticmethod
    def _outbox(db: sqlite3.Connection, tables: set[str]) -> Iterator[Metric]:
        sent = CounterMetricFamily("backlight_notifications_sent", "Notifications the "
                                   "channel acknowledged, per channel", labels=["channel"])
        failed = CounterMetricFamily("backlight_notifications_failed", "Notifications given "
                                     "up on after their retries, per channel", labels=["channel"])
        depth = GaugeMetricFamily("backlight_outbox_depth", "Notifications waiting to be "
                                  "sent (pending in the outbox), per channel", labels=["channel"])
        if "outbox" in tables:
            for channel, status, n in db.execute(
                    "SELECT channel, status, COUNT(*) FROM outbox GROUP BY 1, 2"):
                families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
                    "sent": sent, "dead": failed, "pending": depth}
                family = families.get(status)
                if family is not None:
                    family.add_metric([channel], n)
        yield sent
        yield failed
        yield depth
