"""Committing the offsets of stored batches, and handing them over when partitions are revoked.

Offsets of stored batches are committed at most every ``interval_s`` while busy, and at once
when the consumer asks (caught up, on exit): a crash re-reads what was stored since, and the
store keeps each event once.

Rebalances. The group rebalances only inside ``poll()`` (see ``ingest.transport``). When it
revokes partitions, the source's listener calls ``Committer.handover`` first: it records as
handled the offsets stored and not committed yet, and waits (bounded) for the batch being
stored on the writer thread to record its offsets too, so the revoke commits them and the
partition's next owner starts right after it. A clean handover re-delivers nothing; a batch
stored too late for it is re-read by the next owner.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout

import structlog

from ingest.batch_writer import InFlight
from ingest.consumer_stats import ConsumerStats
from ingest.group_offsets import Handled, Partition
from ingest.transport import Rebalancing, Source

log = structlog.stdlib.get_logger("backlight.consume")

HANDOVER_WAIT_S = 10.0
"""On revoke, how long the handover waits for the batch being stored (the group waits too); a
batch stored later is not committed with the revoke, and its partitions' next owner re-reads it."""


class Committer:
    """Commits ``source``'s offsets of the batches stored; counts its time in
    ``stats.seconds["commit"]``."""

    def __init__(self, source: Source, stats: ConsumerStats, interval_s: float = 1.0,
                 handover_wait_s: float = HANDOVER_WAIT_S) -> None:
        self.source = source
        self.stats = stats
        self.interval_s = interval_s
        self.handover_wait_s = handover_wait_s
        self._pending = Handled()  # stored, not committed yet: next offsets
        self._committed_at = float("-inf")

    def stored(self, next_offsets: Mapping[Partition, int]) -> None:
        """A batch covering these offsets is stored (and finished): commit them with the
        others pending when the last commit is ``interval_s`` old."""
        self._pending.add(next_offsets)
        if time.monotonic() - self._committed_at >= self.interval_s:
            self.commit()

    def pending(self) -> dict[Partition, int]:
        """The offsets stored and not committed yet."""
        return self._pending.snapshot()

    def commit(self) -> None:
        """Commit the offsets of the batches stored so far (and finished)."""
        pending = self._pending.take()
        if not pending:
            return
        t0 = time.perf_counter()
        self.source.commit(pending)
        self._committed_at = time.monotonic()
        self.stats.seconds["commit"] += time.perf_counter() - t0

    def handover(self, in_flight: InFlight | None) -> None:
        """The source's revoke listener calls this (on Kafka's IO thread, while the poll loop
        waits in ``poll``): record as handled the offsets stored and not committed yet, after
        waiting for the batch being stored (``in_flight``), so the revoke commits them. The
        poll loop finishes that batch (its subscribers) after the poll."""
        if not isinstance(self.source, Rebalancing):
            return
        pending = self._pending.snapshot()
        if pending:
            self.source.handled(pending)
        if in_flight is None:
            return
        prepared, writing = in_flight
        try:
            new = writing.result(timeout=self.handover_wait_s)
        except FutureTimeout:
            log.warning("the batch being stored was not stored in time for the handover; the "
                        "partitions' next owner re-reads it", events=len(prepared.events),
                        waited_s=self.handover_wait_s)
            return
        except Exception:  # a bug in the write: the poll loop's ``settle`` raises it
            return
        if new is not None:
            self.source.handled(prepared.next_offsets)
