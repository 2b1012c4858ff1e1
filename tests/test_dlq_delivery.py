"""Dead-lettering on a real broker never stops the consumer: letters too large for the DLQ
topic arrive truncated (named by size and sha256), a null-valued header arrives empty, and a
broker stopped while dead letters are in hand is waited out (nothing lost, the batch's offsets
committed only after the letters are acknowledged; a stop meanwhile commits nothing)."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from broker_support import (
    own_broker,  # noqa: F401 (a fixture)
    relaunch,
)
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import popen_backlight, stored_count, write_config

from ingest.broker import BrokerState, LocalBroker
from ingest.consumer import Consumer, ConsumerOptions
from ingest.rdkafka import RdKafkaSource
from ingest.rdkafka_sink import RdKafkaSink
from ingest.transport import HeaderList, ensure_topics
from schemas.decode import SourceSpec
from storage import SQLiteStore

pytestmark = pytest.mark.kafka
DLQ_MAX_BYTES = 2048
BIG = 10_000


def valid(i: int) -> bytes:
    return json.dumps({"event_id": f"ok-{i}", "case_id": f"c-{i % 7}", "activity": f"S{i % 3}",
                       "timestamp": f"2026-03-04T09:{i % 60:02d}:00+01:00"}).encode()


def big_invalid(i: int) -> bytes:
    """10 KB that is not JSON (an unterminated string), different for each i."""
    head = b'{"event_id": "big-%d", "blob": "' % i
    return head + bytes(48 + (i * 7 + j) % 26 for j in range(BIG - len(head)))


@dataclass
class Sent:
    value: bytes
    headers: list[tuple[str, bytes | None]]
    bad: bool


def produce(bootstrap: str, topic: str, stream: Sequence[Sent]) -> None:
    """Publish through librdkafka (it sends null header values as they are), key = index."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for n, sent in enumerate(stream):
        producer.produce(topic, sent.value, str(n).encode(), headers=sent.headers)
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, partitions: int, want: int,
             seconds: float = 90) -> list[Any]:
    """Every message of ``topic`` from the start, once ``want`` arrived (or the deadline)."""
    reader = RdConsumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time()}",
                         "enable.auto.commit": False})
    reader.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[Any] = []
    deadline = time.monotonic() + seconds
    while len(out) < want and time.monotonic() < deadline:
        out += [m for m in reader.consume(500, 0.5) if m.error() is None]
    reader.close()
    return out


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    probe = RdConsumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return [tp.offset for tp in probe.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=20)]
    finally:
        probe.close()


@dataclass
class Run:
    stream: list[Sent]
    letters: list[Any]
    running_after: bool
    returncode: int
    stderr: str
    offsets: list[int]
    stored: int


@pytest.fixture(scope="module")
def small_dlq_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One `backlight consume` over 25 invalid 10 KB messages, one small invalid message with
    a null-valued header, and 60 valid events, into a DLQ topic of max.message.bytes 2048."""
    unique = hex(time.monotonic_ns())[-8:]
    topic, tmp = f"dlqsize.{unique}", tmp_path_factory.mktemp("dlqsize")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics([NewTopic(f"{topic}.dlq", 1, 1, config={
        "max.message.bytes": str(DLQ_MAX_BYTES)})])
    futures[f"{topic}.dlq"].result(30)
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    stream = [Sent(valid(i), [], False) for i in range(60)]
    for i in range(25):
        stream.insert(i * 2 + 1, Sent(big_invalid(i), [("trace", b"t-%d" % i)], True))
    stream.insert(30, Sent(b"{not json", [("trace", None), ("n", b"30")], True))
    produce(kafka_bootstrap, topic, stream)
    db = tmp / "s.db"
    cfg = write_config(tmp / "b.toml", kafka_bootstrap, db, [(topic, "claims")], f"g-{unique}")
    bad = sum(s.bad for s in stream)
    with popen_backlight("consume", "--config", str(cfg)) as proc:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and stored_count(db) < 60 and proc.poll() is None:
            time.sleep(0.5)
        letters = read_all(kafka_bootstrap, f"{topic}.dlq", 1, bad)
        time.sleep(2)  # the commit after the last batch (at most every second while busy)
        running = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    return Run(stream, letters, running, proc.returncode, err,
               committed(kafka_bootstrap, f"g-{unique}", topic, 2), stored_count(db))


def test_letters_too_large_for_the_dlq_arrive_truncated_with_size_and_sha256(
        small_dlq_run: Run) -> None:
    """Each 10 KB invalid message is in a DLQ of max.message.bytes 2048 once or more, cut
    (a prefix of the original) and saying so with the original's size and sha256; the
    consumer kept running, stored every valid event, and committed both partitions' ends."""
    run = small_dlq_run
    assert run.running_after, run.stderr[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stored == 60
    big = {str(n).encode(): s for n, s in enumerate(run.stream) if s.bad and len(s.value) == BIG}
    seen = set()
    for letter in run.letters:
        if letter.key() not in big:
            continue
        original = big[letter.key()].value
        headers = dict(letter.headers())
        assert headers["backlight.error.code"] == b"invalid_json"
        assert headers["backlight.truncated"] == b"true"
        assert headers["backlight.original.size"] == str(BIG).encode()
        assert headers["backlight.original.sha256"] == hashlib.sha256(original).hexdigest().encode()
        assert original.startswith(letter.value()) and 0 < len(letter.value()) < BIG
        seen.add(letter.key())
    assert seen == set(big), "some oversized dead letters never arrived"
    assert sum(run.offsets) == len(run.stream), "the source offsets were not all committed"
    print("truncated dead letters kept", sorted({len(m.value()) for m in run.letters
                                                 if m.key() in big}), "bytes of", BIG)


def test_a_null_valued_header_is_dead_lettered_as_an_empty_one(small_dlq_run: Run) -> None:
    """The invalid message with a null-valued header is dead-lettered whole, its header
    present with an empty value, its other headers unchanged."""
    (letter,) = [m for m in small_dlq_run.letters if m.key() == b"30"]
    assert letter.value() == b"{not json"
    headers = letter.headers()
    assert ("trace", b"") in headers and ("n", b"30") in headers
    assert dict(headers)["backlight.error.code"] == b"invalid_json"
    assert "backlight.truncated" not in dict(headers)


class StopsTheBroker:
    """The consumer's real dead-letter producer, which stops the broker (waiting until it is
    down) the first time it is handed letters once ``armed``: the letters are in hand."""

    def __init__(self, sink: RdKafkaSink, broker: LocalBroker) -> None:
        self.sink, self.broker = sink, broker
        self.armed = threading.Event()
        self.stopped = threading.Event()

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: HeaderList = ()) -> None:
        if self.armed.is_set() and not self.stopped.is_set():
            assert self.broker.stop()
            self.stopped.set()
        self.sink.send(topic, value, key, headers)

    def flush(self, timeout_s: float = 60.0) -> None:
        self.sink.flush(timeout_s)

    def close(self) -> None:
        self.sink.close()


@dataclass
class Member:
    consumer: Consumer
    thread: threading.Thread
    stop: threading.Event
    store: SQLiteStore


@pytest.fixture()
def members() -> Iterator[list[Member]]:
    started: list[Member] = []
    yield started
    for m in started:
        m.stop.set()
        m.thread.join(60)
        m.store.close()


def start_member(state: BrokerState, topic: str, group: str, db: Path,
                 sink: Any, started: list[Member]) -> Member:
    store = SQLiteStore(db)
    source = RdKafkaSource(state.bootstrap, group, [topic], session_timeout_ms=6000,
                           heartbeat_interval_ms=2000)
    consumer = Consumer(source, sink, store, {topic: SourceSpec(topic, "claims")},
                        options=ConsumerOptions(batch_size=40, poll_timeout_s=0.2,
                                                commit_interval_s=0.0, retry_s=(0.5, 1.0)))
    stop = threading.Event()

    def run() -> None:
        try:
            consumer.run(stop)
        finally:
            source.close()

    thread = threading.Thread(target=run, name="consumer-under-test", daemon=True)
    member = Member(consumer, thread, stop, store)
    started.append(member)
    thread.start()
    return member


def wait(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds:.0f}s: {what}"
        time.sleep(0.25)


def test_broker_stopped_with_dead_letters_in_hand_is_waited_out_nothing_lost(
        tmp_path: Path, own_broker: tuple[LocalBroker, BrokerState],  # noqa: F811
        members: list[Member]) -> None:
    """The broker stops just as a batch's dead letters are handed to the producer (whose
    delivery timeout is 3 s) and stays down until their delivery has failed and is being
    retried: the consumer keeps running; once the broker is back every invalid message is in
    the DLQ (by source offset, at least once), every valid event stored once, and the offsets
    committed to the end. (A consumer stopped while waiting commits nothing of that batch:
    tests/test_consumer_memory.py, on the test transport.)"""
    broker, state = own_broker
    topic, group = "outage.dlq", "g-outage-dlq"
    ensure_topics(state.bootstrap, [topic, f"{topic}.dlq"], partitions=1)
    stream = [Sent(valid(i) if i % 4 else b"{broken %d" % i, [], i % 4 == 0) for i in range(100)]
    produce(state.bootstrap, topic, stream)
    sink = StopsTheBroker(RdKafkaSink(state.bootstrap, delivery_timeout_s=3.0), broker)
    sink.armed.set()
    db = tmp_path / "s.db"
    failed = "dead-lettering the batch failed; trying again"
    with structlog.testing.capture_logs() as logged:
        member = start_member(state, topic, group, db, sink, members)
        wait(sink.stopped.is_set, 120, "the broker stopped with dead letters in hand")
        wait(lambda: any(e["event"] == failed for e in logged), 120,
             "the dead letters' delivery failed (its timeout ran out) and is retried")
        assert member.thread.is_alive(), "the consumer exited during the DLQ outage"
        during = stored_count(db)
        relaunch(broker, state)
        wait(lambda: stored_count(db) == 75, 180, "every valid event of the first 100 stored")
        wait(lambda: committed(state.bootstrap, group, topic, 1) == [100], 60,
             "the offsets committed to the end")
    letters = read_all(state.bootstrap, f"{topic}.dlq", 1, 25)
    offsets = {int(dict(m.headers())["backlight.source.offset"]) for m in letters}
    assert offsets == {i for i in range(100) if i % 4 == 0}
    assert during == 0, "the batch with undelivered dead letters was stored before them"
    print(f"DLQ outage: {len(letters)} letters for 25 invalid messages; stored during it: "
          f"{during}")
