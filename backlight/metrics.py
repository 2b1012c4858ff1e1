"""Prometheus metrics for ``/metrics``, each ``Metrics`` in a registry of its own.

Three sources feed it:

- the consumer, through ``Metrics.observe_batch`` (its ``on_batch`` hook, called in the poll
  loop after each batch, and with the lag only while idle): events consumed, stored and
  duplicate per topic, dead letters per topic and reason, the batch latency and the store's
  share of it (its write and commit), the time of the last offset commit, and the lag per
  partition; the time of its last report of any kind
  tells ``/readyz`` whether it still gets answers from the broker (``backlight.web.health``);
- the readiness probe's quick read of the store (``observe_store_read``): its latency;
- the store, read at scrape time by ``StoreCollector`` through the store, alert state and
  outbox interfaces (SQLite or PostgreSQL alike): events per process, the alerts by process,
  status and severity, the alerts fired (FIRING and RECURRED changes in the history), the
  notifications sent and given up per channel, and the outbox depth (pending deliveries).

These last counters are totals the store keeps, so they survive restarts and count what the
CLI, ``alerts run`` and other processes did too.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter as Counter_
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from backlight.read_models import NAME as READ_MODELS
from ingest.consumer_stats import BatchReport
from schemas.errors import BacklightError
from storage import (
    AlertState,
    EventStore,
    OutboxQueue,
    ReadModelTables,
    open_alert_state,
    open_outbox,
    open_store,
)

log = structlog.stdlib.get_logger("backlight.metrics")
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
READ_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


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
        self.store_write_seconds = Histogram("backlight_store_write_seconds", "The store's "
                                             "write of a batch, its commit included",
                                             buckets=BATCH_BUCKETS, registry=r)
        self.last_commit = Gauge("backlight_last_commit_timestamp_seconds", "When the "
                                 "consumer last committed a batch's offsets (Unix time)",
                                 registry=r)
        self.store_read_seconds = Histogram("backlight_store_read_seconds", "Round trip of "
                                            "the readiness probe's quick read of the store "
                                            "(its highest arrival seq)", buckets=READ_BUCKETS,
                                            registry=r)
        self.map_renders = Counter("backlight_map_renders", "Process maps laid out by "
                                   "Graphviz for map.svg (requests the cache did not answer)",
                                   registry=r)
        self.map_busy = Counter("backlight_map_busy", "map.svg requests refused with 503: "
                                "every render slot stayed taken", registry=r)
        self._lock = threading.Lock()
        self._lags: dict[tuple[str, int], int] | None = None
        self._reported_at: float | None = None
        self._store: StoreCollector | None = None
        self._acting: Collector | None = None
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
        if report.store_seconds is not None:
            self.store_write_seconds.observe(report.store_seconds)
            self.last_commit.set(time.time())
        if report.lags is not None:
            self._set_lags(report.lags)
        with self._lock:
            self._reported_at = time.monotonic()

    def observe_store_read(self, seconds: float) -> None:
        """A quick read of the store answered in ``seconds`` (the readiness probe's)."""
        self.store_read_seconds.observe(seconds)

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
            self.consumer_running, self._reported_at = True, None

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
    def seconds_since_report(self) -> float | None:
        """Seconds since the consumer's last report (a batch, or its lag while idle); None
        before the first. A healthy consumer reports at least every second or so: its lag
        lookups need the broker, so reports stop while the broker cannot be reached."""
        with self._lock:
            at = self._reported_at
        return None if at is None else time.monotonic() - at

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

    def watch_time_to_act(self, collector: Collector) -> None:
        """Add the time-to-act gauges (``backlight.time_to_act``), replacing earlier ones."""
        with self._lock:
            previous, self._acting = self._acting, collector
        if previous is not None:
            self.registry.unregister(previous)
        self.registry.register(collector)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (content type
        ``prometheus_client.CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


class StoreCollector(Collector):
    """The store's figures (either backend), read fresh at each scrape through the store, the
    alert state and the outbox interfaces, opened on first use and again after a failure.
    ``backlight_store_up`` is 0 (and the rest absent) when they cannot be read."""

    def __init__(self, url: str, store: EventStore | None = None) -> None:
        self.url = url
        self.store = store
        self._own_store: EventStore | None = None
        self._state: AlertState | None = None
        self._outbox: OutboxQueue | None = None
        self._read_models: ReadModelTables | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("backlight_store_up", "1 when the store answered this scrape")
        with self._lock:
            try:
                families = list(self._read())
            except (BacklightError, OSError) as exc:
                log.warning(f"metrics: the store cannot be read: {exc}")
                self._close()
                up.add_metric([], 0)
                yield up
                return
        up.add_metric([], 1)
        yield up
        yield from families

    def _close(self) -> None:
        for part in (self._own_store, self._state, self._outbox, self._read_models):
            if part is not None:
                with contextlib.suppress(BacklightError, OSError):
                    part.close()
        self._own_store = self._state = self._outbox = self._read_models = None

    def _read(self) -> Iterable[Metric]:
        if self.url.startswith("sqlite:///") and not Path(self.url[len("sqlite:///"):]).is_file():
            raise BacklightError(f"no store file at {self.url[len('sqlite:///'):]}")
        store = self.store
        if store is None:
            store = self._own_store = self._own_store or open_store(self.url)
        self._state = state = self._state or open_alert_state(self.url)
        self._outbox = outbox = self._outbox or open_outbox(self.url)
        self._read_models = tables = self._read_models or ReadModelTables(self.url)
        events = GaugeMetricFamily("backlight_store_events", "Events in the store, per process",
                                   labels=["process"])
        for count in store.counts():
            events.add_metric([count.process], count.events)
        current = GaugeMetricFamily("backlight_alerts", "Stored alerts, per process, status "
                                    "(pending, firing, resolved, confirmed) and severity",
                                    labels=["process", "status", "severity"])
        tally = Counter_((a.process, a.status.value, a.severity.value)
                         for a in state.alerts().values())
        for labels, n in sorted(tally.items()):
            current.add_metric(list(labels), n)
        fired = CounterMetricFamily("backlight_alerts_fired", "Times an alert started firing "
                                    "(FIRING and RECURRED changes in the alert history), per "
                                    "process and rule",
                                    labels=["process", "rule"])
        for (process, rule), n in sorted(state.fired().items()):
            fired.add_metric([process, rule], n)
        sent = CounterMetricFamily("backlight_notifications_sent", "Notifications the "
                                   "channel acknowledged, per channel", labels=["channel"])
        failed = CounterMetricFamily("backlight_notifications_failed", "Notifications given "
                                     "up on after their retries, per channel", labels=["channel"])
        depth = GaugeMetricFamily("backlight_outbox_depth", "Notifications waiting to be "
                                  "sent (pending in the outbox), per channel", labels=["channel"])
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "sent": sent, "dead": failed, "pending": depth}
        for (channel, status), n in sorted(outbox.counts().items()):
            family = families.get(status)
            if family is not None:
                family.add_metric([channel], n)
        unfolded = GaugeMetricFamily(
            "backlight_read_models_unfolded_events", "Stored events not folded into the read "
            "models yet (the overview and the figures answer once they are): alert when it grows")
        unfolded.add_metric([], max(0, store.last_seq() - tables.mark(READ_MODELS)))
        return [events, current, fired, sent, failed, depth, unfolded]
