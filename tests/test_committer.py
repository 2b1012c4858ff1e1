"""The committer alone, on the test transport in memory (``ingest.memory``: the commit and
revoke contract it shares with Kafka is tests/test_transport_contract.py): offsets committed
at most every interval, and handed over when the partitions are revoked, the batch being stored
included if it is stored in time (``ingest.committer``). The consumer's whole rebalance
contract on the real broker: tests/test_rebalance.py."""

from __future__ import annotations

from concurrent.futures import Future

from structlog.testing import capture_logs

from ingest.committer import Committer
from ingest.consumer_stats import ConsumerStats
from ingest.decode_policy import Prepared
from ingest.memory import MemoryBroker, MemorySource


def assigned_source(broker: MemoryBroker, topic: str, group: str) -> MemorySource:
    """A source in ``group`` that owns both partitions of ``topic`` (each holding messages)."""
    broker.create_topics([topic], partitions=2)
    sink = broker.sink()
    for i in range(20):
        sink.send(topic, b"m", key=str(i).encode())
    sink.flush()
    source = broker.source(group, [topic])
    source.poll(0.0, 1)
    assert source.partitions() == {(topic, 0), (topic, 1)}
    return source


def test_stored_offsets_are_committed_at_most_every_interval_and_all_when_asked() -> None:
    """The first stored batch is committed at once; the next, within the interval, waits
    for ``commit``, which then commits the latest offset of each partition."""
    topic, group, broker = "commit", "g", MemoryBroker()
    source = assigned_source(broker, topic, group)
    committer = Committer(source, ConsumerStats(), interval_s=3600)
    committer.stored({(topic, 0): 3})
    assert broker.committed(group) == {(topic, 0): 3}
    committer.stored({(topic, 0): 5, (topic, 1): 2})
    committer.stored({(topic, 1): 4})
    assert committer.pending() == {(topic, 0): 5, (topic, 1): 4}
    assert broker.committed(group) == {(topic, 0): 3}
    committer.commit()
    assert committer.pending() == {}
    assert broker.committed(group) == {(topic, 0): 5, (topic, 1): 4}


def test_a_revoke_commits_the_offsets_pending_and_those_of_the_batch_stored_in_time() -> None:
    """Leaving the group, the hand-over gives the revoke the offsets stored and not committed
    yet, and those of the batch in flight once its write has finished: all are committed."""
    topic, group, broker = "handover", "g", MemoryBroker()
    source = assigned_source(broker, topic, group)
    committer = Committer(source, ConsumerStats(), interval_s=3600)
    committer.stored({(topic, 0): 2})
    committer.stored({(topic, 0): 6})
    writing: Future[list[bool] | None] = Future()
    writing.set_result([True])
    in_flight = (Prepared([], next_offsets={(topic, 1): 9}), writing)
    source.set_handover(lambda: committer.handover(in_flight))
    source.close()
    assert broker.committed(group) == {(topic, 0): 6, (topic, 1): 9}


def test_a_batch_not_stored_in_time_is_left_to_the_next_owner() -> None:
    """A write still running when the hand-over's wait ends: its offsets are not committed
    (the next owner re-reads that batch), the ones stored before are, and it is logged."""
    topic, group, broker = "handover.late", "g", MemoryBroker()
    source = assigned_source(broker, topic, group)
    committer = Committer(source, ConsumerStats(), interval_s=3600, handover_wait_s=0.3)
    committer.stored({(topic, 0): 2})
    committer.stored({(topic, 0): 4})
    writing: Future[list[bool] | None] = Future()  # never finishes
    in_flight = (Prepared([], next_offsets={(topic, 1): 9}), writing)
    source.set_handover(lambda: committer.handover(in_flight))
    with capture_logs() as logged:
        source.close()
    assert broker.committed(group) == {(topic, 0): 4}
    assert ("the batch being stored was not stored in time for the handover; the partitions' "
            "next owner re-reads it") in [e["event"] for e in logged]
