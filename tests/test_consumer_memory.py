"""The consumer's own logic on the test transport in memory (``ingest.memory``; its contract
with Kafka: tests/test_transport_contract.py), on a real SQLite store: dead letters that the
broker does not acknowledge hold their batch (nothing stored, nothing committed) and are retried;
a consumer stopped while waiting commits nothing of that batch and the next member of the group
finishes it; while the broker is away the consumer's reports stop, so ``/readyz``'s rule turns
it unready, and it resumes by itself. What crosses Kafka during a real outage:
tests/test_outages.py (the group outage) and tests/test_dlq_delivery.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from conftest import read_store, stored_count

from backlight.metrics import Metrics
from backlight.web.health import readiness
from ingest.consumer import Consumer, ConsumerOptions
from ingest.memory import MemoryBroker
from schemas.decode import SourceSpec
from storage import SQLiteStore

TOPIC = "claims.events"
DEADLINE_S = 60.0  # a hang guard only


def valid(i: int) -> bytes:
    return (f'{{"event_id":"e{i}","case_id":"c{i % 7}","activity":"Check",'
            f'"timestamp":"2024-01-01T00:00:{i % 60:02d}Z"}}').encode()


def wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S:.0f}s: {what}"
        time.sleep(0.01)


def start(broker: MemoryBroker, db: Path, metrics: Metrics | None = None) -> tuple[
        Consumer, threading.Thread, threading.Event]:
    """A consumer of ``TOPIC`` in group g on its own thread, storing into ``db`` (reporting
    each batch and its lag to ``metrics``, as ``backlight consume --metrics-port`` does)."""
    source = broker.source("g", [TOPIC])
    consumer = Consumer(source, broker.sink(), SQLiteStore(db),
                        {TOPIC: SourceSpec(TOPIC, "claims")},
                        options=ConsumerOptions(batch_size=40, poll_timeout_s=0.05,
                                                commit_interval_s=0.0, retry_s=(0.01, 0.02),
                                                lag_interval_s=0.05),
                        on_batch=metrics.observe_batch if metrics is not None else None)
    stop = threading.Event()

    def run() -> None:
        try:
            consumer.run(stop)
        finally:
            source.close()
            consumer.store.close()

    thread = threading.Thread(target=run, name="consumer-under-test", daemon=True)
    thread.start()
    return consumer, thread, stop


def test_unacknowledged_dead_letters_hold_their_batch_and_a_stop_commits_none_of_it(
        tmp_path: Path) -> None:
    """With the broker not acknowledging, a batch with dead letters is neither stored nor
    committed, and is retried (logged); once acknowledged again it is stored and committed.
    Down again, a consumer stopped while retrying exits at once, committing nothing of that
    batch; the next member of the group stores it and dead-letters its invalid messages."""
    broker = MemoryBroker(partitions=1)
    broker.create_topics([TOPIC, f"{TOPIC}.dlq"])
    sink = broker.sink()
    for i in range(80):
        sink.send(TOPIC, valid(i) if i % 4 else b"{broken %d" % i)
    sink.flush()
    db = tmp_path / "s.db"
    broker.down = True
    failed = "dead-lettering the batch failed; trying again"
    with structlog.testing.capture_logs() as logged:
        consumer, thread, stop = start(broker, db)
        wait(lambda: any(e["event"] == failed for e in logged), "the dead letters' failure")
        assert thread.is_alive() and stored_count(db) == 0 and broker.committed("g") == {}
        assert consumer.stats.messages == 0 and broker.messages(f"{TOPIC}.dlq") == []
        broker.down = False
        wait(lambda: broker.committed("g") == {(TOPIC, 0): 80}, "the offsets committed")
        assert stored_count(db) == 60
        assert len(broker.messages(f"{TOPIC}.dlq")) == 20

        for i in range(80, 120):
            sink.send(TOPIC, valid(i) if i % 4 else b"{broken %d" % i)
        sink.flush()
        broker.down = True
        wait(lambda: sum(e["event"] == failed for e in logged) == 2,
             "the next batch's dead letters failing")
        stop.set()
        began = time.monotonic()
        thread.join(DEADLINE_S)
    assert not thread.is_alive() and time.monotonic() - began < 5
    assert broker.committed("g") == {(TOPIC, 0): 80} and stored_count(db) == 60
    broker.down = False
    _, again, stop_again = start(broker, db)
    wait(lambda: broker.committed("g") == {(TOPIC, 0): 120}, "the next member finished it")
    stop_again.set()
    again.join(DEADLINE_S)
    assert stored_count(db) == 90
    offsets = sorted(int(dict(m.headers)["backlight.source.offset"] or b"-1")
                     for m in broker.messages(f"{TOPIC}.dlq"))
    assert offsets == [i for i in range(120) if i % 4 == 0]


STALE_S = 0.5  # readiness's stale_after_s here (STALE_AFTER_S = 10 s in the service)


def test_with_the_broker_away_its_reports_stop_readyz_turns_503_and_it_resumes(
        tmp_path: Path) -> None:
    """Caught up, the consumer is ready with lag 0. With the broker away (its lag lookups and
    commits failing) it keeps running but reports nothing, so /readyz's rule says 503
    "unavailable", the consumer stalled; with the broker back it is ready again by itself,
    and the events published before and after are each stored and counted once."""
    broker = MemoryBroker(partitions=3)
    broker.create_topics([TOPIC, f"{TOPIC}.dlq"])
    sink = broker.sink()
    for i in range(50):
        sink.send(TOPIC, valid(i), key=b"c%d" % (i % 7))
    sink.flush()
    db = tmp_path / "s.db"
    metrics = Metrics()
    metrics.consumer_started()
    store = SQLiteStore(db)

    def probe() -> tuple[int, dict[str, object]]:
        return readiness(metrics, store.last_seq, stale_after_s=STALE_S)

    _, thread, stop = start(broker, db, metrics)
    try:
        wait(lambda: probe()[0] == 200 and probe()[1].get("lag") == 0
             and stored_count(db) == 50, "caught up and ready")
        broker.down = True
        wait(lambda: probe()[0] == 503, "/readyz 503 with the broker away")
        code, during = probe()
        assert thread.is_alive()
        assert during["status"] == "unavailable" and during["consumer"] == "stalled"
        assert str(during["reason"]).startswith("no report from the consumer")
        broker.down = False
        for i in range(50, 90):
            sink.send(TOPIC, valid(i), key=b"c%d" % (i % 7))
        sink.flush()
        answers: list[tuple[int, dict[str, object]]] = []

        def ready_again() -> bool:
            answers.append(probe())
            return (answers[-1][0] == 200 and stored_count(db) == 90
                    and broker.committed("g") == broker.end_offsets(TOPIC))

        wait(ready_again, "ready again, all stored and committed")
        code, after = answers[-1]
    finally:
        stop.set()
        thread.join(DEADLINE_S)
        store.close()
    assert not thread.is_alive()
    assert code == 200 and after["lag"] == 0
    ids = [row[0] for row in read_store(db, "SELECT event_id FROM events")]
    assert sorted(ids) == sorted(f"e{i}" for i in range(90))
    assert metrics.registry.get_sample_value("backlight_events_stored_total",
                                             {"topic": TOPIC}) == 90
