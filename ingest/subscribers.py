"""Subscribers of the store: each on its own thread, fed in store order, retried, never lost.

This module holds the contract (``Subscription``, ``SubscriberStats``, the protocols);
ingest/dispatcher.py runs it (``Dispatcher`` and one worker thread per subscription).

The consumer calls ``Dispatcher.notify`` after each store commit, with the newly stored
events, and goes back to polling; it never waits for a subscriber. Each subscriber has a
high-water mark, the last arrival seq it has handled, and a worker thread that takes the next
events after its mark, at most ``batch_limit``, calls the subscriber with them and only then
moves the mark. The next events come from the commits the worker was handed when they follow
its mark exactly (the usual case: no read-back), else from ``store.since(mark, batch_limit)``
(after a failure, when it fell behind and its bounded queue dropped commits, when another
writer added events, when it starts). So a subscriber gets every stored event once, in store
order, however far behind it is (a fresh live map catches up from the beginning, a restarted
durable subscriber from its mark), and its view is the store's.

A commit's events are known to be exactly the seqs ``(previous head, new head]`` when the
store's highest seq grew by just their number since the previous notify and the first seq
after the previous head is the commit's first event (the caller is the only writer in
between); otherwise they are not queued and the worker reads the store.

A subscriber that raises is logged (its name, the error, the events it has pending) and
called again with the same batch after a backoff (doubling up to a cap); ingest goes on
meanwhile and the events wait in the store. The contract for a subscriber: a call either
handles the whole batch or raises without a partial effect (else it must tolerate getting
the batch's events again). A durable subscriber's mark is saved in the store after each
batch (table ``subscriber_marks``), so a restart resumes right after the last handled batch
(a crash between a call and the saving of its mark gets that one batch again).

Seq order is commit order on SQLite (one writer at a time, seqs allocated inside the write
transaction), so a reader never sees a gap that fills in later. PostgreSQL's writers commit in
parallel, out of seq order, and its reads by seq (``last_seq``, ``since``) see only the rows
no write in flight can precede any more (storage/pg_events.py): the same guarantee, but a
commit may become visible a moment after it returned (once the writes before it end).

Partitions. A subscription that ``follows_partitions`` (the live map) keeps state only for
this consumer's Kafka partitions, none at first. When the group moves partitions the consumer
calls ``follow_partitions``, and the subscriber's thread, between two batches, calls its
``follow(partitions, history)``: it drops the partitions lost and builds those gained from
``history``, the store read ``batch_limit`` events at a time up to the subscriber's mark (the
batches after the mark carry the rest). So each partition's events reach it exactly once,
whoever stored them, in bounded memory. Changes queued meanwhile apply as one (a partition
revoked and assigned back costs nothing); a failed handover is retried like a failed batch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import StoredEvent

Subscriber = Callable[[Sequence[CaseEvent], Sequence[Coordinates | None]], None]
"""Called with a batch of stored events, in store order, and where each came from in Kafka."""
Partition = tuple[str, int]
History = Iterable[tuple[Sequence[CaseEvent], Sequence[Coordinates | None]]]


@runtime_checkable
class PartitionFollower(Protocol):
    """A subscriber whose state is per Kafka partition (``mining.live_maps.LiveMaps``)."""

    def __call__(self, events: Sequence[CaseEvent],
                 origins: Sequence[Coordinates | None]) -> None: ...

    def follow(self, lanes: Collection[Partition], history: History) -> int:
        """Keep exactly these partitions: drop the others, build the new ones from
        ``history`` (all or nothing); return how many history events it took."""
        ...


class SubscriberStore(Protocol):
    """What the dispatcher needs from the store (``EventStore`` has it all)."""

    def last_seq(self) -> int: ...
    def since(self, seq: int, limit: int) -> list[StoredEvent]: ...
    def subscriber_mark(self, name: str) -> int | None: ...
    def save_subscriber_mark(self, name: str, seq: int) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Wait ``initial_s`` after a failure, times ``factor`` after each further one, at most ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the given number of consecutive failures (>= 1)."""
        return float(min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1)))


@dataclass(frozen=True)
class Subscription:
    """A named subscriber and how it is fed.

    ``durable``: its mark is saved in the store, so a restart resumes after the last batch it
    handled. ``start``: where it starts without a saved mark, at the store's first event or
    after its last one. ``batch_limit`` bounds the events per call (and the memory).
    ``follows_partitions``: its callback is a ``PartitionFollower``, kept to this consumer's
    partitions (it builds them from the store when assigned, so ``start="end"`` reads less).
    """

    name: str
    callback: Subscriber
    durable: bool = False
    start: Literal["beginning", "end"] = "beginning"
    batch_limit: int = 5000
    retry: Backoff = field(default_factory=Backoff)
    follows_partitions: bool = False

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a subscription needs a name")
        if self.follows_partitions and not isinstance(self.callback, PartitionFollower):
            raise ValueError(f"subscription {self.name!r}: follows_partitions needs a callback "
                             "with a follow(partitions, history) method")
        if self.batch_limit < 1:
            raise ValueError(f"subscription {self.name!r}: batch_limit must be at least 1")


@dataclass
class SubscriberStats:
    """One subscriber's progress (exported as metrics, logged when it stops)."""

    name: str
    mark: int = 0
    """The last store seq it has handled."""
    lag: int = 0
    """Events stored (up to the last commit the dispatcher heard of) and not yet handled."""
    handled: int = 0
    batches: int = 0
    failures: int = 0
    """Calls that raised, in total."""
    failing: int = 0
    """Consecutive calls that raised (0 once it succeeds again)."""
    last_error: str | None = None
    last_error_at: float | None = None
    """Wall-clock time of the last failure."""
    busy_s: float = 0.0
    """Time spent in its calls."""
    read_back: int = 0
    """Events it got by reading the store (catch-up) rather than handed over from a commit."""
    delivery_max_s: float = 0.0
    """Longest time from a store commit to this subscriber having handled the commit's events."""
    partitions: frozenset[Partition] | None = None
    """The partitions it follows (None: not a partition follower)."""
    handovers: int = 0
    handover_read: int = 0
    """Events read from the store to build the partitions it was assigned."""


def subscription(item: Subscriber | Subscription, taken: set[str]) -> Subscription:
    """A ``Subscription`` for a plain callable, named after it (made unique among ``taken``)."""
    if isinstance(item, Subscription):
        return item
    base = getattr(item, "__name__", None) or type(item).__name__
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}#{n}"
    return Subscription(name, item)
