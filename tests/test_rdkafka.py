"""The librdkafka source (``[kafka] client = "confluent-kafka"``, the default) on a real broker:
what it reads, its lag, and its errors. The rebalance contract it shares with kafka-python's
source is proven for both in tests/test_rebalance.py."""

from __future__ import annotations

import socket
import time

import pytest
from broker_support import relaunch
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ingest.broker import BrokerState, LocalBroker
from ingest.errors import KafkaUnavailable
from ingest.rdkafka import RdKafkaSource, settings
from ingest.transport import KafkaSink, Message, ensure_topics

COORDINATOR_NOT_READY = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                         KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._WAIT_COORD,
                         KafkaError._TIMED_OUT)
"""What a broker just back may answer while its group coordinator loads."""


def test_settings_map_the_kafka_python_options_and_refuse_unknown_ones() -> None:
    """The options the consumer passes (kafka-python's names) reach librdkafka under its names;
    an option it does not know is refused by name, never silently dropped."""
    conf, wait_s = settings("h:9092", "g", "c", {
        "session_timeout_ms": 6000, "heartbeat_interval_ms": 2000, "max_poll_records": 10,
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u", "sasl_plain_password": "p", "ssl_cafile": "/ca.pem",
        "bootstrap_timeout_ms": 1500})
    assert (conf["bootstrap.servers"], conf["group.id"], conf["client.id"]) == ("h:9092", "g", "c")
    assert conf["enable.auto.commit"] is False and conf["auto.offset.reset"] == "earliest"
    assert (conf["session.timeout.ms"], conf["heartbeat.interval.ms"]) == (6000, 2000)
    assert (conf["security.protocol"], conf["sasl.mechanism"], conf["sasl.username"],
            conf["sasl.password"], conf["ssl.ca.location"]) == (
        "SASL_SSL", "SCRAM-SHA-512", "u", "p", "/ca.pem")
    assert wait_s == 1.5 and "max_poll_records" not in str(conf)
    with pytest.raises(ValueError, match="fetch_min_bytes"):
        settings("h:9092", "g", "c", {"fetch_min_bytes": 1})


def test_no_broker_at_the_address_is_named_within_the_timeout() -> None:
    """A bootstrap address where nothing listens raises KafkaUnavailable naming it, after the
    bootstrap timeout, instead of retrying forever as librdkafka would."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there
    with pytest.raises(KafkaUnavailable, match=address):
        RdKafkaSource(address, "g", ["t"], bootstrap_timeout_ms=1500)


def _read_all(source: RdKafkaSource, count: int, timeout_s: float = 60.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += source.poll(0.5, 100)
    return got


@pytest.mark.kafka
def test_messages_arrive_with_their_coordinates_key_and_headers(kafka_bootstrap: str,
                                                                unique: str) -> None:
    """Each message is read once, in offset order per partition, with its topic, partition,
    offset, key, value and headers as produced (none, or several, one empty)."""
    topic = f"rdk.read.{unique}"
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    sink = KafkaSink(kafka_bootstrap)
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(40)}
    for i, (key, value) in enumerate(sent.items()):
        sink.send(topic, value, key=key, headers=[("h", key), ("empty", b"")] if i % 2 else ())
    sink.flush()
    sink.close()
    source = RdKafkaSource(kafka_bootstrap, f"g-{unique}", [topic], session_timeout_ms=6000)
    try:
        got = _read_all(source, len(sent))
        time.sleep(1.0)
        got += source.poll(0.5, 100)  # nothing more: each message once
    finally:
        source.close()
    assert sorted(m.key or b"" for m in got) == sorted(sent)
    for m in got:
        key = m.key or b""
        assert m.topic == topic and m.partition in (0, 1) and m.value == sent[key]
        headers = [("h", key), ("empty", b"")] if int(key[1:]) % 2 else []
        assert list(m.headers) == headers
    for p in (0, 1):
        offsets = [m.offset for m in got if m.partition == p]
        assert offsets == list(range(len(offsets)))


@pytest.mark.kafka
def test_lag_is_zero_for_partitions_taken_over_at_their_end(kafka_bootstrap: str,
                                                            unique: str) -> None:
    """A member that takes over partitions whose offsets were committed at their end reads
    nothing from them, and still reports a lag of 0 for each (not the whole partition):
    ``--exit-when-idle`` waits for that 0."""
    topic = f"rdk.lag.{unique}"
    ensure_topics(kafka_bootstrap, [topic], partitions=3)
    sink = KafkaSink(kafka_bootstrap)
    for i in range(30):
        sink.send(topic, b"{}", key=str(i).encode())
    sink.flush()
    sink.close()
    first = RdKafkaSource(kafka_bootstrap, f"g-{unique}", [topic], session_timeout_ms=6000)
    try:
        got = _read_all(first, 30)
        ends: dict[tuple[str, int], int] = {}
        for m in got:
            ends[(m.topic, m.partition)] = max(ends.get((m.topic, m.partition), 0), m.offset + 1)
        first.commit(ends)
        assert first.lags() == {(topic, p): 0 for p in range(3)}
    finally:
        first.close()
    second = RdKafkaSource(kafka_bootstrap, f"g-{unique}", [topic], session_timeout_ms=6000)
    try:
        deadline = time.monotonic() + 60
        while not second.assigned() and time.monotonic() < deadline:
            assert second.poll(0.5, 100) == []
        assert second.partitions() == {(topic, p) for p in range(3)}
        assert second.lags() == {(topic, p): 0 for p in range(3)} and second.lag() == 0
    finally:
        second.close()


@pytest.mark.kafka
def test_commits_never_wait_for_an_absent_broker_and_land_once_it_is_back(
        own_broker: tuple[LocalBroker, BrokerState], unique: str) -> None:
    """With the broker stopped, no commit waits for the group coordinator (a synchronous
    librdkafka commit waited at least the session timeout, and at times for the whole outage
    and beyond: the poll loop stalled and SIGTERM went unheard), and the poll goes on; once the
    broker is back, the next commits land the offsets handled meanwhile."""
    broker, state = own_broker
    topic, group = f"rdk.outage.{unique}", f"g-{unique}"
    ensure_topics(state.bootstrap, [topic], partitions=2)
    sink = KafkaSink(state.bootstrap)
    for i in range(40):
        sink.send(topic, f"m{i}".encode(), key=str(i).encode())
    sink.flush()
    sink.close()
    source = RdKafkaSource(state.bootstrap, group, [topic], session_timeout_ms=6000)
    try:
        read = _read_all(source, 40)
        assert len(read) == 40
        handled = {(m.topic, m.partition): m.offset + 1 for m in read}
        assert broker.stop()
        slowest, until = 0.0, time.monotonic() + 12  # past the session timeout (6 s)
        while time.monotonic() < until:
            started = time.monotonic()
            source.commit(handled)
            source.poll(0.2, 100)
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 5.0, f"a commit and poll took {slowest:.1f}s with the broker away"
        relaunch(broker, state)
        check = Consumer({"bootstrap.servers": state.bootstrap, "group.id": group})
        try:
            def committed() -> dict[tuple[str, int], int] | str:
                """The group's committed offsets, or why the broker could not say yet (just
                back, its group coordinator may still be loading: NOT_COORDINATOR)."""
                parts = [TopicPartition(topic, p) for p in range(2)]
                try:
                    return {(tp.topic, tp.partition): tp.offset
                            for tp in check.committed(parts, timeout=10)}
                except KafkaException as exc:
                    error = exc.args[0]
                    if not (error.retriable() or error.code() in COORDINATOR_NOT_READY):
                        raise
                    return str(exc)
            deadline = time.monotonic() + 120
            while committed() != handled:
                assert time.monotonic() < deadline, f"committed {committed()}, not {handled}"
                source.commit(handled)
                source.poll(0.5, 100)
        finally:
            check.close()
    finally:
        source.close()
