"""The committer alone on a real broker: offsets committed at most every interval, and handed
over when the partitions are revoked, the batch being stored included if it is stored in time
(``ingest.committer``). The consumer's whole rebalance contract: tests/test_rebalance.py."""

from __future__ import annotations

import time
from concurrent.futures import Future

import pytest
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import TopicPartition
from structlog.testing import capture_logs

from ingest.committer import Committer
from ingest.consumer_stats import ConsumerStats
from ingest.decode_policy import Prepared
from ingest.rdkafka import RdKafkaSource
from ingest.transport import KafkaSink, ensure_topics

pytestmark = pytest.mark.kafka


def assigned_source(bootstrap: str, topic: str, group: str) -> RdKafkaSource:
    """A source in ``group`` that owns both partitions of ``topic`` (each holding 10 messages)."""
    ensure_topics(bootstrap, [topic], partitions=2)
    sink = KafkaSink(bootstrap)
    for i in range(20):
        sink.send(topic, b"m", key=str(i).encode())
    sink.flush()
    sink.close()
    source = RdKafkaSource(bootstrap, group, [topic], session_timeout_ms=6000)
    deadline = time.monotonic() + 60
    while len(source.partitions()) < 2:
        assert time.monotonic() < deadline, "the source got no partitions"
        source.poll(0.2, 1)
    return source


def committed(bootstrap: str, topic: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets of ``topic``, as another client reads them."""
    check = RdConsumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {(tp.topic, tp.partition): tp.offset for tp in check.committed(
            [TopicPartition(topic, p) for p in range(2)], timeout=10) if tp.offset >= 0}
    finally:
        check.close()


def wait_committed(bootstrap: str, topic: str, group: str, source: RdKafkaSource | None,
                   expected: dict[tuple[str, int], int]) -> None:
    deadline = time.monotonic() + 30
    while (now := committed(bootstrap, topic, group)) != expected:
        assert time.monotonic() < deadline, f"committed {now}, not {expected}"
        if source is not None:
            source.poll(0.2, 1)  # serves the commit's answer


def test_stored_offsets_are_committed_at_most_every_interval_and_all_when_asked(
        kafka_bootstrap: str, unique: str) -> None:
    """The first stored batch is committed at once; the next, within the interval, waits
    for ``commit``, which then commits the latest offset of each partition."""
    topic, group = f"commit.{unique}", f"g-{unique}"
    source = assigned_source(kafka_bootstrap, topic, group)
    committer = Committer(source, ConsumerStats(), interval_s=3600)
    try:
        committer.stored({(topic, 0): 3})
        wait_committed(kafka_bootstrap, topic, group, source, {(topic, 0): 3})
        committer.stored({(topic, 0): 5, (topic, 1): 2})
        committer.stored({(topic, 1): 4})
        assert committer.pending() == {(topic, 0): 5, (topic, 1): 4}
        source.poll(0.5, 1)
        assert committed(kafka_bootstrap, topic, group) == {(topic, 0): 3}
        committer.commit()
        assert committer.pending() == {}
        wait_committed(kafka_bootstrap, topic, group, source, {(topic, 0): 5, (topic, 1): 4})
    finally:
        source.close()


def test_a_revoke_commits_the_offsets_pending_and_those_of_the_batch_stored_in_time(
        kafka_bootstrap: str, unique: str) -> None:
    """Leaving the group, the hand-over gives the revoke the offsets stored and not committed
    yet, and those of the batch in flight once its write has finished: all are committed."""
    topic, group = f"handover.{unique}", f"g-{unique}"
    source = assigned_source(kafka_bootstrap, topic, group)
    committer = Committer(source, ConsumerStats(), interval_s=3600)
    committer.stored({(topic, 0): 2})
    committer.stored({(topic, 0): 6})
    writing: Future[list[bool] | None] = Future()
    writing.set_result([True])
    in_flight = (Prepared([], next_offsets={(topic, 1): 9}), writing)
    source.set_handover(lambda: committer.handover(in_flight))
    source.close()
    wait_committed(kafka_bootstrap, topic, group, None, {(topic, 0): 6, (topic, 1): 9})


def test_a_batch_not_stored_in_time_is_left_to_the_next_owner(
        kafka_bootstrap: str, unique: str) -> None:
    """A write still running when the hand-over's wait ends: its offsets are not committed
    (the next owner re-reads that batch), the ones stored before are, and it is logged."""
    topic, group = f"handover.late.{unique}", f"g-{unique}"
    source = assigned_source(kafka_bootstrap, topic, group)
    committer = Committer(source, ConsumerStats(), interval_s=3600, handover_wait_s=0.3)
    committer.stored({(topic, 0): 2})
    committer.stored({(topic, 0): 4})
    writing: Future[list[bool] | None] = Future()  # never finishes
    in_flight = (Prepared([], next_offsets={(topic, 1): 9}), writing)
    source.set_handover(lambda: committer.handover(in_flight))
    with capture_logs() as logged:
        source.close()
    wait_committed(kafka_bootstrap, topic, group, None, {(topic, 0): 4})
    assert ("the batch being stored was not stored in time for the handover; the partitions' "
            "next owner re-reads it") in [e["event"] for e in logged]
