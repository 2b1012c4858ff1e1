"""Kafka behind two small interfaces: a ``Source`` of message batches and a ``Sink`` to publish.

The rest of Backlight only sees ``Message``, ``Source`` and ``Sink``; kafka-python lives here
and librdkafka (the consumer's default source, ``RdKafkaSource``) in ``ingest/rdkafka.py``,
nowhere else, so a test or another client library touches one module.

Rebalances. ``KafkaSource`` subscribes with a rebalance listener. kafka-python (3.x) calls it
only inside ``poll()`` and ``close()``, but on its own IO thread while the polling thread
waits in that call; so the listener must not block (no blocking consumer call: it awaits)
and only records what changed, for the poll loop to act on (``Rebalancing.rebalances``).
The consumer stores a batch on its writer thread while it polls the next one, so partitions
may be revoked while a batch of theirs is being stored. The listener then first calls the
consumer's handover (``Rebalancing.set_handover``): it waits, bounded, for that write and
records its offsets as handled (``handled``). The listener then commits, while this member
owns them, the revoked partitions' handled offsets not committed yet (that batch's, or any
whose commit failed earlier), so the next owner starts right after what is stored; and it
forgets them when the partitions are lost instead (evicted: committing is no longer
possible; the next owner re-reads them and the store keeps each event once). A later
``commit`` leaves out the partitions no longer assigned. That bookkeeping, and the warnings
when a commit fails, are ``ingest.group_offsets.GroupOffsets``, shared by both sources: each
only sends the commits through its own client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from ingest.errors import DeliveryFailed, KafkaUnavailable
from ingest.group_offsets import GroupOffsets
from ingest.group_offsets import Partition as Partition
from ingest.group_offsets import Rebalance as Rebalance

log = structlog.stdlib.get_logger("backlight.consume.kafka")
LOOKUP_TIMEOUT_MS = 2000
"""Longest wait for the broker in a lag lookup (end offsets, committed offsets): without a
bound, kafka-python waits ``request_timeout_ms`` (30 s) while the broker is down, and the
poll loop, which a SIGTERM asks to stop, with it."""
COMMIT_TIMEOUT_MS = 10_000
"""Longest wait for an offset commit; one that times out is kept for the next commit."""
CLOSE_TIMEOUT_MS = 3000
"""Longest wait for leaving the group on close (its last commit on revoke included): while the
broker is down, kafka-python would wait ``request_timeout_ms`` (30 s) after a SIGTERM."""
HeaderList = Sequence[tuple[str, bytes | None]]
_KEEP_FUTURES = 10_000


class Message(Protocol):
    """One Kafka record, as the consumer sees it (kafka-python's records are passed as they are;
    librdkafka's become ``ingest.rdkafka.Record``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> HeaderList: ...


class Source(Protocol):
    """Batches of messages from a consumer group, and the commit of what was handled."""

    def poll(self, timeout_s: float, max_records: int) -> list[Message]: ...

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit, per (topic, partition), the offset of the next message to read."""
        ...

    def assigned(self) -> bool:
        """True once the group gave this consumer its partitions."""
        ...

    def lag(self) -> int:
        """Messages on the subscribed topics the group has not consumed yet (all partitions,
        not just this consumer's: a dead member's partitions count until someone takes them)."""
        ...

    def lags(self) -> dict[tuple[str, int], int]:
        """``lag`` per (topic, partition) (optional: the consumer asks only when observed)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Rebalancing(Protocol):
    """A source in a consumer group, whose partitions change when members come and go."""

    def rebalances(self) -> list[Rebalance]:
        """The changes since the last call, in order (called from the polling thread)."""
        ...

    def partitions(self) -> frozenset[Partition]:
        """The partitions assigned to this consumer now."""
        ...

    def set_handover(self, handover: Callable[[], None]) -> None:
        """Have ``handover`` called when partitions are revoked or lost, before their offsets
        are committed: it records (``handled``) the offsets of the work stored by then."""
        ...

    def handled(self, next_offsets: Mapping[Partition, int]) -> None:
        """Record that the messages before these offsets are stored, without committing."""
        ...


@dataclass(frozen=True)
class Undelivered:
    """A message the broker did not acknowledge, and why (``DeliveryFailed.failed``):
    ``headers`` is the very object given to ``send`` (callers tell their messages by it)."""

    topic: str
    value: bytes
    key: bytes | None
    headers: HeaderList
    too_large: bool
    """Larger than the topic (or the client) takes: sending it again as it is cannot work."""
    reason: str


class Sink(Protocol):
    """Publishes messages; ``flush`` returns once the broker has acknowledged all of them, or
    raises ``KafkaUnavailable``: a ``DeliveryFailed`` names the messages that failed and
    counts those still in flight when its wait ended (they keep going)."""

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: HeaderList = ()) -> None: ...

    def flush(self, timeout_s: float = 60.0) -> None: ...

    def close(self) -> None: ...


class KafkaSource:
    """A kafka-python consumer in a group, auto-commit off (Backlight commits after storing)."""

    def __init__(self, bootstrap: str, group_id: str, topics: Iterable[str],
                 client_id: str = "backlight", **overrides: Any) -> None:
        settings: dict[str, Any] = {
            "bootstrap_servers": bootstrap, "group_id": group_id, "client_id": client_id,
            "enable_auto_commit": False, "auto_offset_reset": "earliest",
            "max_partition_fetch_bytes": 2 * 1024 * 1024, "fetch_max_bytes": 16 * 1024 * 1024,
            "max_poll_records": 5000, "bootstrap_timeout_ms": 15000,
        }
        settings.update(overrides)
        try:
            self._consumer = KafkaConsumer(**settings)
        except KafkaTimeoutError as exc:
            raise KafkaUnavailable(f"no Kafka broker answered at {bootstrap}") from exc
        self._topics = list(topics)
        self._group = GroupOffsets(log)
        self._consumer.subscribe(self._topics, listener=_Listener(self))

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        records = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        if len(records) == 1:
            return list(*records.values())
        return [r for batch in records.values() for r in batch]

    def set_handover(self, handover: Callable[[], None]) -> None:
        self._group.set_handover(handover)

    def handled(self, next_offsets: Mapping[Partition, int]) -> None:
        self._group.handled(next_offsets)

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit, with any earlier refused commit of partitions still ours; partitions no
        longer assigned are left out (the revoke listener committed what was handled)."""
        offsets = self._group.to_commit(next_offsets, self.partitions)
        if not offsets:
            return
        try:
            self._consumer.commit(_offsets(offsets), timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            # CommitFailedError: the group is rebalancing: the revoke listener commits these
            # while this member still owns the partitions; if it lost them, their new owner
            # re-reads the messages and the idempotent store keeps each event once. Any other:
            # the broker or the group coordinator cannot be reached (an outage): the batch is
            # stored; its offsets go with the next commit (or the revoke listener's).
            self._group.commit_failed(type(exc), isinstance(exc, CommitFailedError),
                                      len(offsets), repr(exc))
            return
        self._group.committed(offsets)

    def rebalances(self) -> list[Rebalance]:
        return self._group.rebalances()

    def partitions(self) -> frozenset[Partition]:
        return frozenset((tp.topic, tp.partition) for tp in self._consumer.assignment())

    async def _revoked(self, revoked: Iterable[TopicPartition], lost: bool) -> None:
        """The listener's part (kafka-python's IO thread): commit what was handled of the
        revoked partitions and not committed yet (unless lost), and record the change."""
        offsets = self._group.revoke(frozenset((tp.topic, tp.partition) for tp in revoked), lost)
        if not offsets:
            return
        try:
            await self._consumer.commit_async(_offsets(offsets))
        except KafkaError as exc:
            log.warning("offset commit on revoke failed; the next owner re-reads the batch",
                        partitions=len(offsets), error=repr(exc))
        else:
            self._group.committed_on_revoke(len(offsets))

    def _assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._group.assigned(frozenset((tp.topic, tp.partition) for tp in assigned))

    def assigned(self) -> bool:
        return bool(self._consumer.assignment())

    def lag(self) -> int:
        return sum(self.lags().values())

    def lags(self) -> dict[tuple[str, int], int]:
        """Per partition of the subscribed topics: its end offset minus this consumer's
        position (its own partitions) or the group's committed offset (the others)."""
        consumer = self._consumer
        parts = [TopicPartition(topic, p) for topic in self._topics
                 for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            return {}
        wait = LOOKUP_TIMEOUT_MS
        ends = consumer.end_offsets(parts, timeout_ms=wait)
        begins = consumer.beginning_offsets(parts, timeout_ms=wait)
        mine = consumer.assignment()
        out: dict[tuple[str, int], int] = {}
        for tp in parts:
            done = (consumer.position(tp, timeout_ms=wait) if tp in mine
                    else consumer.committed(tp, timeout_ms=wait))
            out[(tp.topic, tp.partition)] = max(0, ends[tp] - (begins[tp] if done is None
                                                                else done))
        return out

    def close(self) -> None:
        self._consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Hands kafka-python's rebalance callbacks to the source (awaited on its IO thread)."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._source._revoked(revoked, lost=False)

    async def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        await self._source._revoked(lost, lost=True)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._source._assigned(assigned)


def _offsets(next_offsets: Mapping[Partition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
            for (t, p), o in next_offsets.items()}


class KafkaSink:
    """A kafka-python producer: acks from all in-sync replicas, batched. ``flush`` reports
    failures like ``ingest.rdkafka_sink.RdKafkaSink`` (``DeliveryFailed``)."""

    def __init__(self, bootstrap: str, client_id: str = "backlight", **overrides: Any) -> None:
        settings: dict[str, Any] = {
            "bootstrap_servers": bootstrap, "client_id": client_id, "acks": "all",
            "linger_ms": 20, "batch_size": 256 * 1024, "compression_type": None,
            "max_request_size": 4 * 1024 * 1024, "bootstrap_timeout_ms": 15000,
        }
        settings.update(overrides)
        try:
            self._producer = KafkaProducer(**settings)
        except KafkaTimeoutError as exc:
            raise KafkaUnavailable(f"no Kafka broker answered at {bootstrap}") from exc
        self._failures: list[Undelivered] = []  # appended on the client's thread
        self._futures: list[Any] = []  # sent and maybe not acknowledged yet
        self._kept = _KEEP_FUTURES

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: HeaderList = ()) -> None:
        def failed(exc: BaseException) -> None:
            self._failures.append(Undelivered(topic, value, key, headers,
                                              isinstance(exc, MessageSizeTooLargeError),
                                              repr(exc)))

        try:
            future = self._producer.send(topic, value=value, key=key,
                                         headers=list(headers) or None)
        except MessageSizeTooLargeError as exc:  # over the client's own limit
            failed(exc)
            return
        future.add_errback(failed)
        self._futures.append(future)
        if len(self._futures) >= 2 * self._kept:  # forget the acknowledged ones now and then
            self._futures = [f for f in self._futures if not f.is_done]
            self._kept = max(_KEEP_FUTURES, len(self._futures))

    def flush(self, timeout_s: float = 60.0) -> None:
        with contextlib.suppress(KafkaTimeoutError):
            self._producer.flush(timeout=timeout_s)
        self._futures = [f for f in self._futures if not f.is_done]
        if self._failures or self._futures:
            failed, self._failures = self._failures, []
            first = failed[0].reason if failed else f"not acknowledged within {timeout_s}s"
            raise DeliveryFailed(f"publishing failed: {len(failed)} messages not delivered, "
                                 f"{len(self._futures)} in flight: {first}", list(failed),
                                 len(self._futures))

    def close(self) -> None:
        self._producer.close()


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 3,
                  **options: Any) -> None:
    """Create the topics that do not exist yet (replication factor 1 on a local broker)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="backlight-admin",
                                 bootstrap_timeout_ms=15000, **options)
    except KafkaTimeoutError as exc:
        raise KafkaUnavailable(f"no Kafka broker answered at {bootstrap}") from exc
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, partitions, 1) for t in dict.fromkeys(topics) if t not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                log.warning("could not create topics %s: %s", [t.name for t in new], exc)
            else:
                _await_leaders(bootstrap, new, options)
    finally:
        admin.close()


def _await_leaders(bootstrap: str, topics: Sequence[NewTopic], options: Mapping[str, Any]) -> None:
    """Wait until each new partition's leader answers (a ListOffsets request reaches it), so
    the first produce does not bounce with NotLeaderForPartitionError and log retry warnings."""
    probe = KafkaConsumer(bootstrap_servers=bootstrap, client_id="backlight-admin",
                          enable_auto_commit=False, **options)
    try:
        probe.end_offsets([TopicPartition(t.name, p) for t in topics
                           for p in range(t.num_partitions)])
    except KafkaError as exc:  # the producer's own retries still cover it
        log.info("new topics' leaders not confirmed: %s", exc)
    finally:
        probe.close()
