"""The transport contract the consumer relies on, asserted alike on the real broker (librdkafka's
source, kafka-python's sink) and on the test transport in memory (``ingest.memory``), so the
tests of the consumer's logic that run on the memory one test what Kafka does: a key stays on
one partition, in offset order; a group member reads from its group's commit, another group
from the earliest; a member leaving hands its partitions, and what it handled, to the other;
the lag is what the group has not consumed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import TopicPartition

from ingest.group_offsets import Partition
from ingest.memory import MemoryBroker
from ingest.rdkafka import RdKafkaSource
from ingest.transport import KafkaSink, Message, Sink, Source, ensure_topics

DEADLINE_S = 90.0  # a hang guard: a loaded machine's rebalance takes seconds, never this long


@dataclass
class Transport:
    """One kind of transport, as the contract's tests use it."""

    name: str
    create: Callable[[str, int], None]
    sink: Callable[[], Sink]
    source: Callable[[str, str], Source]
    committed: Callable[[str, str, int], dict[Partition, int]]


def kafka_committed(bootstrap: str, group: str, topic: str, partitions: int
                    ) -> dict[Partition, int]:
    check = RdConsumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {(tp.topic, tp.partition): tp.offset for tp in check.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10) if tp.offset >= 0}
    finally:
        check.close()


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    if request.param == "memory":
        broker = MemoryBroker()
        yield Transport("memory", lambda t, n: broker.create_topics([t], n), broker.sink,
                        lambda g, t: broker.source(g, [t]), lambda g, t, n: broker.committed(g))
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    yield Transport(
        "kafka", lambda t, n: ensure_topics(bootstrap, [t], partitions=n),
        lambda: KafkaSink(bootstrap),
        lambda g, t: RdKafkaSource(bootstrap, g, [t], session_timeout_ms=6000),
        lambda g, t, n: kafka_committed(bootstrap, g, t, n))


def publish(transport: Transport, topic: str, keys: Sequence[str]) -> None:
    sink = transport.sink()
    for i, key in enumerate(keys):
        sink.send(topic, f"m{i}".encode(), key=key.encode())
    sink.flush()
    sink.close()


def read(sources: Sequence[Source], count: int) -> list[Message]:
    """Poll ``sources`` in turn until they handed out ``count`` messages."""
    out: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(out) < count:
        assert time.monotonic() < deadline, f"{len(out)} of {count} messages read"
        for source in sources:
            out.extend(source.poll(0.2, 100))
    return out


def settle(sources: Sequence[Source], parts: int) -> list[Message]:
    """Poll until the members hold every one of ``parts`` partitions once, each some; the
    messages polled meanwhile."""
    out: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    while True:
        owned = [s.partitions() for s in sources]  # type: ignore[attr-defined]
        if all(owned) and sum(map(len, owned)) == parts == len(frozenset().union(*owned)):
            return out
        assert time.monotonic() < deadline, f"partitions not shared: {owned}"
        for source in sources:
            out.extend(source.poll(0.1, 100))


def test_a_key_stays_on_one_partition_in_offset_order(transport: Transport, unique: str) -> None:
    """Messages of one key land on one partition with consecutive offsets, in send order, and a
    group member reads each message once."""
    topic = f"contract.keys.{transport.name}.{unique}"
    transport.create(topic, 3)
    keys = [f"k{i % 5}" for i in range(40)]
    publish(transport, topic, keys)
    source = transport.source(f"g-{unique}", topic)
    try:
        got = read([source], 40)
    finally:
        source.close()
    assert sorted(m.value or b"" for m in got) == sorted(f"m{i}".encode() for i in range(40))
    by_key: dict[bytes, list[Message]] = {}
    for m in got:
        by_key.setdefault(m.key or b"", []).append(m)
    for msgs in by_key.values():
        assert len({m.partition for m in msgs}) == 1
        values = [int((m.value or b"m")[1:]) for m in msgs]
        assert values == sorted(values)
    for p in {m.partition for m in got}:
        offsets = sorted(m.offset for m in got if m.partition == p)
        assert offsets == list(range(len(offsets)))


def test_a_member_starts_at_its_groups_commit_and_another_group_at_the_earliest(
        transport: Transport, unique: str) -> None:
    """A member commits part of what it read and leaves: the next member of its group starts
    right after the commit; a member of another group reads everything; the committed offsets
    are what another client reads; the lag is what the group has not consumed."""
    topic, group = f"contract.commit.{transport.name}.{unique}", f"g-{unique}"
    transport.create(topic, 1)
    publish(transport, topic, ["k"] * 10)
    first = transport.source(group, topic)
    got = read([first], 10)
    assert first.lag() == 0  # its position: everything read
    first.commit({(topic, 0): got[3].offset + 1})
    first.close()
    assert transport.committed(group, topic, 1) == {(topic, 0): 4}
    again = transport.source(group, topic)
    other = transport.source(f"other-{unique}", topic)
    try:
        assert again.lag() == 6  # the group's commit: before its first poll
        assert [m.value for m in read([again], 6)] == [f"m{i}".encode() for i in range(4, 10)]
        assert len(read([other], 10)) == 10
    finally:
        again.close()
        other.close()


def test_a_member_leaving_hands_its_partitions_and_what_it_handled_to_the_other(
        transport: Transport, unique: str) -> None:
    """Two members share a topic's partitions; one records offsets as handled, is handed over
    on leaving (its handover runs first) and leaves: its handled offsets are committed with the
    revoke, and the other member takes every partition from there."""
    topic, group = f"contract.group.{transport.name}.{unique}", f"g-{unique}"
    transport.create(topic, 2)
    publish(transport, topic, [f"k{i}" for i in range(40)])
    one = transport.source(group, topic)
    two = transport.source(group, topic)
    try:
        settle([one, two], 2)
        mine = sorted(one.partitions())  # type: ignore[attr-defined]
        handed: list[str] = []
        one.set_handover(lambda: handed.append("handover"))  # type: ignore[attr-defined]
        one.handled({p: 1 for p in mine})  # type: ignore[attr-defined]
        one.close()
        assert handed == ["handover"]
        assert transport.committed(group, topic, 2) == {p: 1 for p in mine}
        first: dict[Partition, int] = {}
        deadline = time.monotonic() + DEADLINE_S
        while not set(mine) <= set(first):
            assert time.monotonic() < deadline, f"{mine} not taken over: {first}"
            for m in two.poll(0.2, 100):
                first.setdefault((m.topic, m.partition), m.offset)
        assert {p: first[p] for p in mine} == {p: 1 for p in mine}
    finally:
        two.close()
