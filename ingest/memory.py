"""The test transport: a broker in memory behind the same ``Source`` and ``Sink`` interfaces as
Kafka (``ingest.transport``), for tests of the consumer's own logic (decode policy outcomes,
batching, store retries, commit order, dead-letter routing decisions), like faststream's
``TestBroker``.

``MemoryBroker`` holds topics of partitions (lists of ``ingest.rdkafka.Record``) and each
group's committed offsets; ``MemoryBroker.sink()`` publishes to it and
``MemoryBroker.source(group, topics)`` consumes from it as a member of a consumer group. The
contract the consumer relies on is the real one, checked by tests/test_transport_contract.py
against both the real broker and this one: a key always lands on the same partition, a group
member reads each partition from the group's committed offset (the earliest when none), a
commit is what the next member of the group starts from, members share the partitions and a
leaving member's revoke commits what it handled (``ingest.group_offsets``, as the Kafka
sources do), and the lag is what the group has not consumed.

It never replaces Kafka where what crosses Kafka is the behaviour (real offsets, rebalances
under load, dead-letter topic contents, outages): those tests run on the real broker
(tests/broker_support.py, the ``kafka_bootstrap`` fixture). What it adds for tests:
``MemoryBroker.down`` (sends are not acknowledged, commits and lag lookups fail, like an
outage; what a member has fetched already it still reads),
``max_message_bytes`` (a message larger is refused as too large, like a topic's
``max.message.bytes``) and ``ManualClock`` (a clock whose ``sleep`` only moves its time, for code
that takes one, e.g. ``ingest.publish.publish``).

Partitioning: a key's partition is its CRC-32 modulo the partition count (Kafka's clients hash
with murmur2: the partition of a key differs, its stability does not); no key: round robin.
The group assigns partitions eagerly (a change revokes every member's partitions at its next
poll, then assigns the new share), round robin over the sorted partitions in join order.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from ingest.errors import DeliveryFailed, KafkaUnavailable
from ingest.group_offsets import GroupOffsets, Partition, Rebalance
from ingest.rdkafka import Record
from ingest.transport import HeaderList, Message, Undelivered

log = structlog.stdlib.get_logger("backlight.consume.memory")


class ManualClock:
    """A clock for tests: ``monotonic`` is its own time, and ``sleep`` moves it on at once."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)


@dataclass
class _Group:
    members: list[MemorySource] = field(default_factory=list)
    committed: dict[Partition, int] = field(default_factory=dict)
    generation: int = 0
    share: dict[int, frozenset[Partition]] = field(default_factory=dict)  # id(member) -> parts


class MemoryBroker:
    """Topics, partitions and consumer groups in memory (thread-safe)."""

    def __init__(self, partitions: int = 3, max_message_bytes: int | None = None) -> None:
        self.partitions = partitions
        self.max_message_bytes = max_message_bytes
        self.down = False
        """While True, sends fail (``flush`` raises ``DeliveryFailed`` as when their delivery
        timeout runs out), commits fail (kept for the next commit) and lag lookups fail
        (``KafkaUnavailable``: they need the broker's end offsets), as while a broker is away."""
        self._topics: dict[str, list[list[Record]]] = {}
        self._groups: dict[str, _Group] = {}
        self._changed = threading.Condition()
        self._round_robin = 0

    def create_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        """Create the topics that do not exist yet (``ingest.transport.ensure_topics``)."""
        with self._changed:
            for topic in topics:
                self._topics.setdefault(topic, [[] for _ in range(partitions or self.partitions)])

    def _log(self, topic: str) -> list[list[Record]]:
        if topic not in self._topics:  # auto-created, as the local broker does
            self._topics[topic] = [[] for _ in range(self.partitions)]
        return self._topics[topic]

    def append(self, topic: str, value: bytes, key: bytes | None = None,
               headers: HeaderList = ()) -> Record:
        """Append a message to its partition now and return it as a consumer reads it."""
        with self._changed:
            parts = self._log(topic)
            if key is None:
                p = self._round_robin % len(parts)
                self._round_robin += 1
            else:
                p = zlib.crc32(key) % len(parts)
            record = Record(topic, p, len(parts[p]), key, value, tuple(headers))
            parts[p].append(record)
            self._changed.notify_all()
        return record

    def messages(self, topic: str) -> list[Record]:
        """Every message of ``topic``, partition by partition, in offset order."""
        with self._changed:
            return [r for part in self._topics.get(topic, []) for r in part]

    def end_offsets(self, topic: str) -> dict[Partition, int]:
        """The next offset of each partition of ``topic``."""
        with self._changed:
            return {(topic, p): len(part) for p, part in enumerate(self._topics.get(topic, []))}

    def committed(self, group: str) -> dict[Partition, int]:
        """The group's committed offsets (the next offset to read), per partition."""
        with self._changed:
            return dict(self._groups.get(group, _Group()).committed)

    def sink(self) -> MemorySink:
        return MemorySink(self)

    def source(self, group: str, topics: Iterable[str]) -> MemorySource:
        """A new member of ``group`` subscribed to ``topics``."""
        return MemorySource(self, group, topics)

    # group membership (under self._changed)

    def _join(self, member: MemorySource) -> None:
        with self._changed:
            group = self._groups.setdefault(member.group, _Group())
            group.members.append(member)
            self._reassign(group)

    def _leave(self, member: MemorySource) -> None:
        with self._changed:
            group = self._groups[member.group]
            if member in group.members:
                group.members.remove(member)
                self._reassign(group)

    def expel(self, member: MemorySource) -> None:
        """The group drops ``member`` (its session expired): the others share its partitions,
        and it learns at its next poll that it lost them."""
        self._leave(member)

    def _reassign(self, group: _Group) -> None:
        topics = sorted({t for m in group.members for t in m.topics})
        parts = sorted((t, p) for t in topics for p in range(len(self._log(t))))
        count = len(group.members)
        group.share = {id(m): frozenset(parts[i::count]) for i, m in enumerate(group.members)}
        group.generation += 1
        self._changed.notify_all()


class MemorySink:
    """Publishes to a ``MemoryBroker``: acknowledged at ``flush`` (``ingest.transport.Sink``)."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self._pending: list[tuple[str, bytes, bytes | None, HeaderList]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: HeaderList = ()) -> None:
        self._pending.append((topic, value, key, headers))

    def flush(self, timeout_s: float = 60.0) -> None:
        """Append what was sent. While the broker is ``down`` none is: each message fails at
        once as if its delivery timeout ran out; one over ``max_message_bytes`` is refused as
        too large. The failed ones are reported (``DeliveryFailed``), never sent again."""
        pending, self._pending = self._pending, []
        failed: list[Undelivered] = []
        limit = self.broker.max_message_bytes
        for topic, value, key, headers in pending:
            if self.broker.down:
                failed.append(Undelivered(topic, value, key, headers, False,
                                          "KafkaTimeoutError: the broker is down"))
            elif limit is not None and len(value) + len(key or b"") > limit:
                failed.append(Undelivered(topic, value, key, headers, True,
                                          f"MessageSizeTooLargeError: over {limit} bytes"))
            else:
                self.broker.append(topic, value, key, headers)
        if failed:
            raise DeliveryFailed(f"publishing failed: {len(failed)} messages not delivered, "
                                 f"0 in flight: {failed[0].reason}", failed, 0)

    def close(self) -> None:
        pass


class MemorySource:
    """A member of a consumer group on a ``MemoryBroker`` (``ingest.transport.Source`` and
    ``Rebalancing``): partition changes happen inside ``poll``, as with Kafka."""

    def __init__(self, broker: MemoryBroker, group: str, topics: Iterable[str]) -> None:
        self.broker = broker
        self.group = group
        self.topics = list(topics)
        self._offsets = GroupOffsets(log)
        self._owned: dict[Partition, int] = {}  # partition -> position (next offset to read)
        self._generation = 0
        self._closed = False
        with broker._changed:
            for topic in self.topics:
                broker._log(topic)
        broker._join(self)

    def _group(self) -> _Group:
        return self.broker._groups[self.group]

    def _rebalance(self) -> None:
        """Apply the group's latest assignment: give up every partition (revoked, or lost when
        expelled), then take this member's share, each partition once its previous owner gave
        it up. The hand-over runs outside the broker's lock (it waits for the writer thread,
        which may publish dead letters)."""
        broker = self.broker
        with broker._changed:
            group = self._group()
            if self._generation == group.generation:
                return
            expelled = self not in group.members
            revoked = frozenset(self._owned)
        if revoked:
            self._give_up(revoked, lost=expelled)
        with broker._changed:
            if expelled:
                self._generation = group.generation
                return
            share = group.share.get(id(self), frozenset())
            held = {p for m in group.members if m is not self for p in m._owned}
            if share & held:
                return  # an earlier owner has not given them up yet: try at the next poll
            self._owned = {p: group.committed.get(p, 0) for p in sorted(share)}
            self._generation = group.generation
        if share:
            self._offsets.assigned(share)

    def _give_up(self, partitions: frozenset[Partition], lost: bool) -> None:
        """The revoke: the hand-over, then the commit of what was handled (unless lost)."""
        offsets = self._offsets.revoke(partitions, lost=lost)
        with self.broker._changed:
            self._owned = {}
            committed = bool(offsets) and not self.broker.down
            if committed:
                self._group().committed.update(offsets)
            self.broker._changed.notify_all()
        if committed:
            self._offsets.committed_on_revoke(len(offsets))

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        """Up to ``max_records`` messages of this member's partitions: those there already,
        else the first to arrive within ``timeout_s``."""
        broker = self.broker
        deadline = time.monotonic() + timeout_s
        while True:
            self._rebalance()
            with broker._changed:
                out: list[Message] = []
                for (topic, p), position in self._owned.items():
                    taken = broker._topics[topic][p][position:position + max_records - len(out)]
                    out.extend(taken)
                    self._owned[(topic, p)] = position + len(taken)
                    if len(out) >= max_records:
                        break
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                broker._changed.wait(left)

    def commit(self, next_offsets: Mapping[Partition, int]) -> None:
        offsets = self._offsets.to_commit(next_offsets, self.partitions)
        if not offsets:
            return
        if self.broker.down:
            self._offsets.commit_failed("down", False, len(offsets), "the broker is down")
            return
        with self.broker._changed:
            self._group().committed.update(offsets)
        self._offsets.committed(offsets)

    def assigned(self) -> bool:
        return bool(self._owned)

    def partitions(self) -> frozenset[Partition]:
        return frozenset(self._owned)

    def rebalances(self) -> list[Rebalance]:
        return self._offsets.rebalances()

    def set_handover(self, handover: Callable[[], None]) -> None:
        self._offsets.set_handover(handover)

    def handled(self, next_offsets: Mapping[Partition, int]) -> None:
        self._offsets.handled(next_offsets)

    def lag(self) -> int:
        return sum(self.lags().values())

    def lags(self) -> dict[Partition, int]:
        """Per partition of the subscribed topics: its end minus this member's position (its
        own partitions) or the group's committed offset (the others). While the broker is
        ``down``: ``KafkaUnavailable``, as the Kafka sources raise."""
        if self.broker.down:
            raise KafkaUnavailable("cannot look up the consumer lag: the broker is down")
        with self.broker._changed:
            committed = self._group().committed
            return {(t, p): len(part) - self._owned.get((t, p), committed.get((t, p), 0))
                    for t in self.topics for p, part in enumerate(self.broker._topics[t])}

    def close(self) -> None:
        """Leave the group: the revoke commits what was handled (as the Kafka sources do)."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            self._give_up(frozenset(self._owned), lost=False)
        self.broker._leave(self)
