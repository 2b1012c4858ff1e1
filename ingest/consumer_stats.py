"""What the consumer reports: its running totals (``ConsumerStats``) and, to an observer such
as the Prometheus metrics, what each batch did (``BatchReport``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest.subscribers import SubscriberStats

if TYPE_CHECKING:
    from ingest.transport import Partition  # a type only: Kafka's client loads where it is used


@dataclass
class ConsumerStats:
    """Running totals since the consumer started (exported as metrics, logged per batch)."""

    batches: int = 0
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_letters: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    last_commit_at: float | None = None
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Time spent per phase in the poll loop: poll, decode, dead_letter, store_wait (waiting
    for the writer thread), commit, dispatch (telling the subscribers' threads); and on other
    threads: store (the writes, overlapping the loop's next poll and decode) and subscribers
    (their calls)."""
    busy_since: float | None = None
    """Monotonic time the first batch arrived; with ``busy_until`` (the last batch handled)
    it gives the ingest rate, without the group join and the idle tail."""
    busy_until: float | None = None
    delivery_max_s: float = 0.0
    """Longest time from a batch's store commit to its subscribers having it (e.g. live map)."""
    subscribers: dict[str, SubscriberStats] = field(default_factory=dict)
    """Each subscriber's progress when ``run`` returned (live: ``Consumer.dispatcher.stats()``)."""
    drained: bool = True
    """Whether every subscriber had handled every stored event when ``run`` returned."""
    rebalances: int = 0
    """Changes of this consumer's partitions (assigned, revoked or lost) the loop applied."""
    lost: int = 0
    """Of those, partitions taken away without a clean revoke (this member was evicted, e.g. a
    session timeout under load): what it handled of them and had not committed is re-read by
    the next owner, so the store sees those events again (kept once)."""
    partitions: frozenset[Partition] = frozenset()
    """The partitions it owns (as of the last change)."""


@dataclass(frozen=True)
class BatchReport:
    """What one handled batch did, for an observer such as the Prometheus metrics.

    A report with ``seconds`` None handled no batch: the consumer was idle and reports only
    its lag (at most every ``ConsumerOptions.lag_interval_s``, and when it exits caught up)."""

    consumed: Mapping[str, int] = field(default_factory=dict)
    """Messages polled, per topic (valid, malformed and tombstones)."""
    stored: Mapping[str, int] = field(default_factory=dict)
    """Events newly stored, per source topic."""
    duplicates: Mapping[str, int] = field(default_factory=dict)
    """Valid events the store already had (a replay), per source topic."""
    dead_letters: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Messages dead-lettered, per (source topic, reason code)."""
    seconds: float | None = None
    """From the poll handing over the batch to its end (stored, subscribers told, offsets
    committed or queued for the next commit) (None: no batch)."""
    store_seconds: float | None = None
    """The store's write of the batch, its commit included (None: no batch)."""
    lags: Mapping[tuple[str, int], int] | None = None
    """Messages not yet consumed per (topic, partition) after the batch; None when not looked
    up this time (looked up at most every ``lag_interval_s`` while busy)."""


BatchObserver = Callable[[BatchReport], None]
