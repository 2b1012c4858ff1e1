"""The batch writer alone, on a real SQLite store: a prepared batch stored once, written on its
own thread one batch at a time, and held while the store cannot be written until stopped
(``ingest.batch_writer``). Dead letters and rows the database refuses need a broker and
PostgreSQL: tests/test_dlq_delivery.py and tests/test_store_faults_postgres.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from ingest.batch_writer import BatchWriter
from ingest.consumer_stats import ConsumerStats
from ingest.decode_policy import DecodePolicy, Prepared
from ingest.rdkafka import Record
from ingest.transport import HeaderList
from schemas.decode import SourceSpec
from storage import SQLiteStore

TOPIC = "claims.events"
POLICY = DecodePolicy({TOPIC: SourceSpec(TOPIC, "claims")})


class NoDeadLetters:
    """A Sink for batches that must not dead-letter anything."""

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: HeaderList = ()) -> None:
        raise AssertionError(f"unexpected dead letter to {topic}")

    def flush(self, timeout_s: float = 60.0) -> None:
        pass

    def close(self) -> None:
        pass


def batch(ids: Sequence[int]) -> Prepared:
    return POLICY.prepare([
        Record(TOPIC, 0, i, None, json.dumps({
            "event_id": f"e{i}", "case_id": f"c{i % 2}", "activity": "Check",
            "timestamp": "2024-01-01T00:00:00Z"}).encode(), ()) for i in ids])


@pytest.fixture()
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "s.db")


def test_a_batch_is_stored_once_and_the_writer_says_which_events_were_new(
        store: SQLiteStore) -> None:
    """The first write stores every event (all new); a replay overlapping it stores only the
    events the store lacked, and says so per event; the store's time is counted."""
    stats = ConsumerStats()
    writer = BatchWriter(store, NoDeadLetters(), stats)
    first = batch([0, 1, 2])
    assert writer.write(first) == [True, True, True]
    assert first.store_seconds is not None and stats.seconds["store"] > 0
    assert writer.write(batch([1, 2, 3])) == [False, False, True]
    assert [c.events for c in store.counts()] == [4]
    store.close()


def test_on_its_thread_the_writer_holds_one_batch_in_flight_until_it_is_settled(
        store: SQLiteStore) -> None:
    """Submitted, a batch is in flight; settling waits for it and gives it with its new
    events, once; after shutdown the writer no longer has a thread."""
    stats = ConsumerStats()
    writer = BatchWriter(store, NoDeadLetters(), stats)
    assert writer.settle() is None
    writer.start(threading.Event())
    try:
        assert writer.threaded
        prepared = batch([0, 1])
        writer.submit(prepared)
        assert writer.in_flight is not None and writer.in_flight[0] is prepared
        assert writer.settle() == (prepared, [True, True])
        assert writer.in_flight is None and writer.settle() is None
        assert "store_wait" in stats.seconds
    finally:
        writer.shutdown()
    assert not writer.threaded
    store.close()


def test_a_store_that_cannot_be_written_holds_the_batch_until_the_writer_is_stopped(
        store: SQLiteStore) -> None:
    """While the store fails, the write is retried; stopped, it gives up the batch (None:
    nothing of it is to be committed) and counts no store time."""
    store.close()  # every write now fails as a StoreError
    stats = ConsumerStats()
    writer = BatchWriter(store, NoDeadLetters(), stats, retry_s=(0.05,))
    stop = threading.Event()
    writer.start(stop)
    stopper = threading.Timer(0.5, stop.set)
    t0 = time.monotonic()
    stopper.start()
    try:
        prepared = batch([0])
        assert writer.write(prepared) is None
    finally:
        stopper.cancel()
        writer.shutdown()
    assert time.monotonic() - t0 >= 0.5
    assert prepared.store_seconds is None and stats.seconds["store"] == 0
