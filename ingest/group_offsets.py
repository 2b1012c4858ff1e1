"""The offsets a consumer group member has stored and not committed, and the revoke hand-over.

What both Kafka sources (``ingest.transport.KafkaSource``, ``ingest.rdkafka.RdKafkaSource``)
share, with no Kafka client in it: ``Handled`` tracks the next offset to read per partition
(the consumer's ``Committer`` uses it too), and ``GroupOffsets`` keeps a source's side of the
rebalance contract (read ``ingest.transport``'s module docstring): the partition changes for
the poll loop, the offsets to commit (those of partitions still owned), what a revoke commits
(after the consumer's hand-over) and the warnings when a commit fails. Each source only sends
the commits through its own client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import structlog

Partition = tuple[str, int]
REPEAT_WARNING_S = 60.0
"""A failed commit is warned about once per kind of failure per this many seconds."""


@dataclass(frozen=True)
class Rebalance:
    """One change of a consumer's partitions, as the group coordinator made it."""

    kind: Literal["assigned", "revoked", "lost"]
    """``revoked``: given up cleanly; ``lost``: taken away (this member was evicted)."""
    partitions: frozenset[Partition]


class Handled:
    """Offsets stored and not committed yet, per partition (the next offset to read): what a
    source commits next, and what its revoke listener commits for the partitions it gives up.
    Thread-safe (the revoke listener runs on the client's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offsets: dict[Partition, int] = {}

    def add(self, next_offsets: Mapping[Partition, int]) -> None:
        """Record that the messages before these offsets are stored (an offset never goes back)."""
        with self._lock:
            for tp, offset in next_offsets.items():
                self._offsets[tp] = max(offset, self._offsets.get(tp, 0))

    def snapshot(self) -> dict[Partition, int]:
        """The offsets recorded, kept."""
        with self._lock:
            return dict(self._offsets)

    def to_commit(self, owned: frozenset[Partition]) -> dict[Partition, int]:
        """Everything to commit now: partitions no longer ``owned`` are forgotten (their
        revoke committed what was handled, or they were lost)."""
        with self._lock:
            for tp in [tp for tp in self._offsets if tp not in owned]:
                del self._offsets[tp]
            return dict(self._offsets)

    def take(self, partitions: Iterable[Partition] | None = None) -> dict[Partition, int]:
        """Remove and return the offsets of ``partitions`` (those being revoked or lost), or
        of all partitions."""
        with self._lock:
            if partitions is None:
                taken, self._offsets = self._offsets, {}
                return taken
            return {tp: self._offsets.pop(tp) for tp in partitions if tp in self._offsets}

    def committed(self, offsets: Mapping[Partition, int]) -> None:
        """Forget what was committed, unless a later batch was handled meanwhile."""
        with self._lock:
            for tp, offset in offsets.items():
                if self._offsets.get(tp) == offset:
                    del self._offsets[tp]


class GroupOffsets:
    """A source's bookkeeping in its consumer group: offsets handled, partition changes, the
    hand-over on revoke. ``log`` is the source's logger (its warnings keep its name)."""

    def __init__(self, log: structlog.stdlib.BoundLogger,
                 repeat_warning_s: float = REPEAT_WARNING_S) -> None:
        self._log = log
        self._repeat_s = repeat_warning_s
        self._lock = threading.Lock()
        self._changes: list[Rebalance] = []
        self._handled = Handled()
        self._handover: Callable[[], None] | None = None
        self._warned: dict[object, float] = {}

    def set_handover(self, handover: Callable[[], None]) -> None:
        """Have ``handover`` called first when partitions are revoked or lost."""
        self._handover = handover

    def handled(self, next_offsets: Mapping[Partition, int]) -> None:
        """Record that the messages before these offsets are stored, without committing."""
        self._handled.add(next_offsets)

    def rebalances(self) -> list[Rebalance]:
        """The partition changes since the last call, in order."""
        with self._lock:
            changes, self._changes = self._changes, []
        return changes

    def assigned(self, partitions: frozenset[Partition]) -> None:
        """Record that the group gave this member ``partitions``."""
        with self._lock:
            self._changes.append(Rebalance("assigned", partitions))

    def to_commit(self, next_offsets: Mapping[Partition, int],
                  owned: Callable[[], frozenset[Partition]]) -> dict[Partition, int]:
        """What to commit now for a commit of ``next_offsets``: with it, any earlier commit
        refused, of the partitions still ``owned`` (a callable: asked only when there is
        something to commit). Empty: nothing to commit."""
        if not next_offsets:
            return {}
        self._handled.add(next_offsets)
        return self._handled.to_commit(owned())

    def committed(self, offsets: Mapping[Partition, int]) -> None:
        """The broker committed ``offsets``: forget them (unless a later batch was handled)."""
        self._handled.committed(offsets)

    def revoke(self, partitions: frozenset[Partition], lost: bool) -> dict[Partition, int]:
        """Partitions revoked (or ``lost``): run the consumer's hand-over (it waits, bounded,
        for the batch being stored and records its offsets), record the change, and return
        the offsets to commit now, while this member still owns them: those handled and not
        committed yet of ``partitions``; none when they were lost (the next owner re-reads
        them; the store keeps each event once)."""
        if self._handover is not None:
            self._handover()
        offsets = self._handled.take(partitions)
        with self._lock:
            self._changes.append(Rebalance("lost" if lost else "revoked", partitions))
        if offsets and lost:
            self._log.warning("partitions lost before their offsets were committed; the next "
                              "owner re-reads them", partitions=len(offsets))
            return {}
        return offsets

    def committed_on_revoke(self, partitions: int) -> None:
        self._log.info("offsets committed on revoke", partitions=partitions)

    def commit_failed(self, kind: object, rebalancing: bool, partitions: int,
                      error: str) -> None:
        """A commit of ``partitions`` failed; its offsets stay handled for the next commit
        (or the revoke's). Warned once per ``kind`` (the client's error code) a minute."""
        now = time.monotonic()
        if now - self._warned.get(kind, float("-inf")) < self._repeat_s:
            return
        self._warned[kind] = now
        if rebalancing:
            self._log.warning("offset commit refused during a rebalance; kept for the handover",
                              partitions=partitions)
        else:
            self._log.warning("offset commit failed; kept for the next commit",
                              partitions=partitions, error=error)
