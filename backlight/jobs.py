"""The jobs behind the CLI, wired from the settings: consume, replay, simulate, the local broker."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from tqdm import tqdm

from backlight.config import ConfigError, Settings
from backlight.metrics import Metrics
from backlight.signals import stop_on_signals
from ingest import simulate as sim
from ingest.broker import LocalBroker
from ingest.consumer import Consumer, ConsumerOptions, ConsumerStats, dead_letter_topic
from ingest.errors import SimulationError
from ingest.logfiles import read_log
from ingest.publish import publish
from ingest.rdkafka import RdKafkaSource
from ingest.rdkafka_sink import RdKafkaSink
from ingest.subscribers import Subscription
from ingest.transport import KafkaSink, KafkaSource, Sink, Source, ensure_topics
from mining.live_maps import LiveMaps
from storage import EventStore, open_store

log = structlog.stdlib.get_logger("backlight.jobs")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
SIMULATION_START = datetime(2026, 1, 5, 9, tzinfo=AMSTERDAM)


def local_broker(settings: Settings) -> LocalBroker:
    return LocalBroker(settings.broker.directory)


GIL_SWITCH_S = 0.001
"""The GIL switch interval while consuming (Python's default is 5 ms). The store's writer thread
gives up the GIL while SQLite or PostgreSQL runs a statement, then waits for the poll loop to
hand it back; at 5 ms per hand-back the writer fell behind and the poll loop waited for it.
1 ms: about 1.1-1.2x the consumer's rate on BPIC 2012 (alternated runs)."""


@contextlib.contextmanager
def switch_interval(seconds: float) -> Iterator[None]:
    """Set the interpreter's GIL switch interval for the block, then restore it."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def live_maps(settings: Settings) -> LiveMaps:
    """The live maps the consumer keeps up to date, compacting closed and idle cases."""
    return LiveMaps(end_activities=settings.end_activities,
                    idle_horizon=timedelta(days=settings.live.idle_horizon_days))


def live_subscription(live: LiveMaps) -> Subscription:
    """The live maps as the consumer's subscriber: they follow this consumer's partitions, so
    each instance of a consumer group keeps the live state of its own partitions (built from
    the store when assigned) and the instances' maps sum to the DFG of the store. It starts
    at the store's end: the first assignment builds the partitions from the whole store."""
    return Subscription("live-map", live, start="end", follows_partitions=True)


def consume(settings: Settings, exit_when_idle: float | None = None,
            live: LiveMaps | None = None,
            stop: threading.Event | None = None,
            subscriptions: Sequence[Subscription] = (),
            drain_timeout_s: float = 30.0,
            metrics: Metrics | None = None) -> ConsumerStats:
    """Run the consumer group over the configured sources until stopped (or idle, if asked),
    keeping the live maps (and the given subscriptions) up to date with every stored batch;
    on exit when idle, wait for them to catch up unless they stall for ``drain_timeout_s``.
    With ``metrics``, each batch and the lag per partition are reported to it (its
    ``consumer_started`` and ``consumer_stopped`` bracket the run, for ``/readyz``)."""
    if metrics is None:
        return _consume(settings, exit_when_idle, live, stop, subscriptions, drain_timeout_s)
    metrics.consumer_started()
    try:
        stats = _consume(settings, exit_when_idle, live, stop, subscriptions, drain_timeout_s,
                         metrics)
    except BaseException as exc:
        metrics.consumer_stopped(exc)
        raise
    metrics.consumer_stopped()
    return stats


def consume_in_background(settings: Settings, metrics: Metrics, stop: threading.Event,
                          exit_when_idle: float | None = None) -> threading.Thread:
    """``consume`` on a daemon thread reporting to ``metrics`` (for ``serve --consume``),
    until ``stop`` is set; a failure is logged and shows in ``/readyz``. ``consumer_started``
    is called before the thread starts, so readiness waits for the lag from the first moment."""
    metrics.consumer_started()

    def work() -> None:
        try:
            consume(settings, exit_when_idle, stop=stop, metrics=metrics)
        except Exception:
            log.exception("the consumer stopped")

    thread = threading.Thread(target=work, name="backlight-consume", daemon=True)
    thread.start()
    return thread


def _consume(settings: Settings, exit_when_idle: float | None, live: LiveMaps | None,
             stop: threading.Event | None, subscriptions: Sequence[Subscription],
             drain_timeout_s: float, metrics: Metrics | None = None) -> ConsumerStats:
    topics = [s.topic for s in settings.sources]
    if not topics:
        raise ConfigError("sources: no [[sources]] configured, nothing to consume")
    k = settings.kafka
    if k.create_topics:
        ensure_topics(k.bootstrap_servers, [*topics, *map(dead_letter_topic, topics)],
                      **k.client_options())
    stop = stop or threading.Event()
    with contextlib.ExitStack() as closing:
        store = open_store(settings.store.url, settings.store.session())
        closing.callback(store.close)
        client = RdKafkaSource if k.client == "confluent-kafka" else KafkaSource
        source = client(k.bootstrap_servers, k.group_id, topics, client_id=k.client_id,
                        max_poll_records=k.batch_size, session_timeout_ms=k.session_timeout_ms,
                        heartbeat_interval_ms=max(1000, k.session_timeout_ms // 3),
                        **k.client_options())
        closing.callback(source.close)
        sink = RdKafkaSink(k.bootstrap_servers, client_id=f"{k.client_id}-dlq",
                           **k.client_options())
        closing.callback(sink.close)
        log.info("consuming", topics=",".join(topics), group=k.group_id,
                 bootstrap=k.bootstrap_servers)
        return _run(settings, store, source, sink, live, stop, exit_when_idle,
                    subscriptions, drain_timeout_s, metrics)


def _run(settings: Settings, store: EventStore, source: Source, sink: Sink,
         live: LiveMaps | None, stop: threading.Event, exit_when_idle: float | None,
         subscriptions: Sequence[Subscription] = (),
         drain_timeout_s: float = 30.0, metrics: Metrics | None = None) -> ConsumerStats:
    """Consume, with the live maps following this consumer's partitions (each built from the
    whole store when assigned, so not just this run), and log what the live maps hold."""
    live = live if live is not None else live_maps(settings)
    consumer = Consumer(source, sink, store, settings.specs(),
                        [live_subscription(live), *subscriptions],
                        options=ConsumerOptions(settings.kafka.batch_size,
                                                drain_timeout_s=drain_timeout_s),
                        on_batch=metrics.observe_batch if metrics is not None else None)
    with stop_on_signals(stop), switch_interval(GIL_SWITCH_S):
        stats = consumer.run(stop, exit_when_idle)
    for process in live:
        state = live.snapshot(process)
        log.info("live map", process=process, events=state["events"], cases=state["cases"],
                 edges=len(state["dfg"]), **state["state"],
                 delivery_max_ms=round(stats.delivery_max_s * 1000, 1))
    return stats




def _topic(settings: Settings, process: str, topic: str | None) -> str:
    return topic or settings.topic_for(process) or f"{process}.events"


def replay(settings: Settings, file: Path, process: str, topic: str | None,
           speed: float | None) -> tuple[int, str]:
    """Publish a log file's events to the process's topic, with a progress bar on stderr."""
    topic = _topic(settings, process, topic)
    k = settings.kafka
    if k.create_topics:
        ensure_topics(k.bootstrap_servers, [topic, dead_letter_topic(topic)], **k.client_options())
    sink = KafkaSink(k.bootstrap_servers, client_id=f"{k.client_id}-replay", **k.client_options())
    try:
        with tqdm(desc=f"replay {file.name}", unit=" events", unit_scale=True,
                  disable=None) as bar:
            sent = publish(read_log(file, process), sink, topic, speed=speed, progress=bar.update)
    finally:
        sink.close()
    return sent, topic


def simulate(settings: Settings, processes: Sequence[str], cases: int, *, seed: int = 0,
             start: datetime | None = None, bottleneck: str | None = None,
             bottleneck_since: datetime | None = None, bottleneck_factor: float = 5.0,
             bottleneck_segment: tuple[str, str] | None = None,
             rework: str | None = None, rework_since: datetime | None = None,
             stuck_after: str | None = None,
             ground_truth: str | None = None) -> dict[str, tuple[int, str]]:
    """Simulate and publish cases per process; anomalies apply where the process has them."""
    start, bottleneck_since, rework_since = (
        None if t is None else t if t.tzinfo else t.replace(tzinfo=AMSTERDAM)
        for t in (start, bottleneck_since, rework_since))
    first = start or SIMULATION_START
    applied = [_anomalies(p, first, (bottleneck, bottleneck_since, bottleneck_factor,
                                     bottleneck_segment), rework, rework_since, stuck_after)
               for p in processes]
    _check_applied({"--bottleneck": bottleneck, "--rework": rework,
                    "--stuck-after": stuck_after}, applied, processes)
    k = settings.kafka
    done: dict[str, tuple[int, str]] = {}
    results: list[sim.Simulation] = []
    sink = KafkaSink(k.bootstrap_servers, client_id=f"{k.client_id}-simulate",
                     **k.client_options())
    try:
        for process, anomalies in zip(processes, applied, strict=True):
            result = sim.simulate(process, cases, seed=seed, start=start, anomalies=anomalies)
            topic = _topic(settings, process, None)
            if k.create_topics:
                ensure_topics(k.bootstrap_servers, [topic, dead_letter_topic(topic)],
                              **k.client_options())
            done[process] = (publish(result.events, sink, topic), topic)
            results.append(result)
    finally:
        sink.close()
    if ground_truth:
        sim.write_ground_truth(results, ground_truth)
    return done


_BottleneckArgs = tuple[str | None, datetime | None, float, tuple[str, str] | None]


def _anomalies(process: str, start: datetime, bottleneck: _BottleneckArgs, rework: str | None,
               rework_since: datetime | None, stuck_after: str | None) -> sim.Anomalies:
    """The requested anomalies that apply to this process: those naming its activities."""
    names = set(sim.activities(process))
    steps = tuple(a.strip() for a in rework.split(",")) if rework else ()
    activity, since, factor, segment = bottleneck
    return sim.Anomalies(
        sim.Bottleneck(activity, since or start, factor, segment) if activity in names else None,
        sim.ReworkLoop(steps, since=rework_since) if steps and set(steps) <= names else None,
        sim.StuckCases(stuck_after) if stuck_after in names else None,
    )


def _check_applied(requested: dict[str, str | None], applied: Sequence[sim.Anomalies],
                   processes: Sequence[str]) -> None:
    """Refuse an anomaly that names activities none of the simulated processes has."""
    fields = {"--bottleneck": "bottleneck", "--rework": "rework", "--stuck-after": "stuck"}
    for flag, value in requested.items():
        if value and not any(getattr(a, fields[flag]) for a in applied):
            known = sorted({name for p in processes for name in sim.activities(p)})
            raise SimulationError(f"{flag} {value!r}: no simulated process "
                             f"({', '.join(processes)}) has that; activities: {', '.join(known)}")
