"""The threads that run the store's subscribers: ``Dispatcher`` and one worker per subscription.

How subscribers are fed, retried and handed partitions is the contract described in
ingest/subscribers.py; this module implements it.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal, cast

import structlog

from ingest.errors import StoreError
from ingest.subscribers import (
    Partition,
    PartitionFollower,
    Subscriber,
    SubscriberStats,
    SubscriberStore,
    Subscription,
    subscription,
)
from schemas.event import CaseEvent
from schemas.frame import Coordinates

log = structlog.stdlib.get_logger("backlight.consume.subscribers")

_PENDING_COMMITS = 1024  # commit times remembered per subscriber for the delivery delay
_QUEUED_BATCHES = 4  # handed-over events queued per subscriber, in its batch_limits; then read back
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(?:[^\s/'\"<>@]*@)?([^\s/'\"<>?#]*)[^\s'\"<>]*")


def redact(text: str) -> str:
    """The text with every URL cut to its scheme and host (webhook paths and tokens gone)."""
    return _URL.sub(lambda m: f"{m[1]}{m[2]}/<redacted>", text)


class _Interrupted(Exception):
    """The dispatcher stopped during a handover."""


@dataclass(frozen=True)
class _Commit:
    """A commit's new events, which are exactly the store seqs ``start + 1 .. start + n``."""

    start: int
    events: Sequence[CaseEvent]
    origins: Sequence[Coordinates | None]

    @property
    def end(self) -> int:
        return self.start + len(self.events)


class _Worker:
    """One subscription's thread: read after the mark, call, move the mark; back off on errors."""

    def __init__(self, sub: Subscription, store: SubscriberStore, dispatcher: Dispatcher) -> None:
        self.sub, self.store, self.dispatcher = sub, store, dispatcher
        self.stats = SubscriberStats(sub.name)
        self.commits: deque[tuple[int, float]] = deque()  # (head seq, commit perf_counter)
        self.queue: deque[_Commit] = deque()  # handed-over commits, in seq order
        self.queued = 0  # events in the queue
        self.thread: threading.Thread | None = None
        self.begun = False
        self.target: frozenset[Partition] | None = None  # partitions to follow (followers)

    def begin(self, head: int) -> None:
        """Set the mark from the store (durable) or the start rule, before the thread runs."""
        saved = self.store.subscriber_mark(self.sub.name) if self.sub.durable else None
        if saved is not None:
            self.stats.mark = saved
        elif self.sub.start == "end" and not self.begun:
            self.stats.mark = head
        if self.sub.follows_partitions and self.stats.partitions is None:
            self.follower.follow(frozenset(), ())  # nothing until the group assigns partitions
            self.stats.partitions = frozenset()
            self.target = frozenset() if self.target is None else self.target
        self.begun = True
        self.stats.lag = max(0, head - self.stats.mark)

    def run(self) -> None:
        """The thread's loop, until the dispatcher stops."""
        d = self.dispatcher
        while True:
            with d.cond:
                while not d.stopping and self.stats.mark >= d.head and self.settled():
                    d.cond.wait()
                if d.stopping:
                    return
            outcome = self.step()
            if outcome != "handled":
                # after a failure, back off; with nothing to read (the head ran ahead of the
                # store, e.g. it was replaced), look again a little later instead of spinning
                delay = self.sub.retry.delay(self.stats.failing) if outcome == "failed" else 0.1
                with d.cond:
                    d.cond.wait_for(lambda: d.stopping, timeout=delay)

    @property
    def follower(self) -> PartitionFollower:  # checked by Subscription
        return cast(PartitionFollower, self.sub.callback)

    def settled(self) -> bool:
        """Whether it follows the partitions it was last told to (always, if not a follower)."""
        return self.target == self.stats.partitions

    def offer(self, commit: _Commit) -> None:
        """Queue a commit's events (the dispatcher's lock held); drop the oldest beyond the
        bound: the worker reads those back from the store."""
        self.queue.append(commit)
        self.queued += len(commit.events)
        while self.queued > _QUEUED_BATCHES * self.sub.batch_limit and len(self.queue) > 1:
            self.queued -= len(self.queue.popleft().events)

    def _next(self, mark: int) -> tuple[list[CaseEvent], list[Coordinates | None], int] | None:
        """The queued events right after ``mark`` (at most a batch, over consecutive
        commits), or None if the queue does not continue from the mark."""
        with self.dispatcher.cond:
            while self.queue and self.queue[0].end <= mark:
                self.queued -= len(self.queue.popleft().events)
            events: list[CaseEvent] = []
            origins: list[Coordinates | None] = []
            at = mark
            for commit in self.queue:
                room = self.sub.batch_limit - len(events)
                if commit.start > at or room <= 0:
                    break
                events += commit.events[at - commit.start:at - commit.start + room]
                origins += commit.origins[at - commit.start:at - commit.start + room]
                at = mark + len(events)
            return (events, origins, at) if events else None

    def _read(self, mark: int) -> tuple[list[CaseEvent], list[Coordinates | None], int] | None:
        """The stored events right after ``mark`` (at most a batch), or None if there are none."""
        rows = self.store.since(mark, self.sub.batch_limit)
        if not rows:
            return None
        self.stats.read_back += len(rows)
        return [e for _, e, _ in rows], [o for _, _, o in rows], rows[-1][0]

    def _history(self, mark: int) -> Iterator[tuple[list[CaseEvent], list[Coordinates | None]]]:
        """The stored events up to ``mark``, in batches of at most ``batch_limit`` (given up
        when the dispatcher stops: the handover is all or nothing)."""
        at = 0
        while at < mark:
            if self.dispatcher.stopping:
                raise _Interrupted
            rows = [r for r in self.store.since(at, self.sub.batch_limit) if r[0] <= mark]
            if not rows:
                return
            with self.dispatcher.cond:
                self.stats.handover_read += len(rows)
            yield [e for _, e, _ in rows], [o for _, _, o in rows]
            at = rows[-1][0]

    def _hand_over(self) -> Literal["handled", "failed"]:
        """Follow the partitions last assigned: drop the lost, build the new up to the mark."""
        with self.dispatcher.cond:
            target, before = self.target or frozenset(), self.stats.partitions or frozenset()
            read = self.stats.handover_read
        mark, started = self.stats.mark, time.perf_counter()
        try:
            taken = self.follower.follow(target, self._history(mark))
        except _Interrupted:
            return "failed"
        except Exception as exc:  # like a failed batch: retried after a backoff
            self._failed(exc, mark)
            return "failed"
        took = time.perf_counter() - started
        with self.dispatcher.cond:
            s = self.stats
            s.partitions, s.failing = target, 0
            s.handovers += 1
            s.busy_s += took
            read = s.handover_read - read
            self.dispatcher.cond.notify_all()
        log.info("subscriber follows its partitions", subscriber=self.sub.name,
                 partitions=len(target), assigned=len(target - before),
                 revoked=len(before - target), mark=mark, history_read=read,
                 history_taken=taken, seconds=round(took, 3))
        return "handled"

    def step(self) -> Literal["handled", "empty", "failed"]:
        """Apply a partition change, else hand over one batch after the mark; say how it went."""
        if not self.settled():
            return self._hand_over()
        mark, sub = self.stats.mark, self.sub
        started = time.perf_counter()
        try:
            batch = self._next(mark) or self._read(mark)
            if batch is None:
                return "empty"
            events, origins, new_mark = batch
            sub.callback(events, origins)
        except Exception as exc:  # a subscriber's failure must not escape its thread
            self._failed(exc, mark)
            return "failed"
        if sub.durable:
            try:
                self.store.save_subscriber_mark(sub.name, new_mark)
            except Exception as exc:  # handled all the same: the next batch saves the mark
                log.warning("could not save the subscriber's mark", subscriber=sub.name,
                            mark=new_mark, error=redact(str(exc))[:500])
        self._handled(new_mark, len(events), time.perf_counter() - started)
        return "handled"

    def _failed(self, exc: Exception, mark: int) -> None:
        d, s = self.dispatcher, self.stats
        with d.cond:
            s.failures += 1
            s.failing += 1
            s.last_error = redact(f"{type(exc).__name__}: {exc}")[:500]
            s.last_error_at = time.time()
            s.lag = max(0, d.head - mark)
            fields: dict[str, object] = {
                "subscriber": s.name, "error": s.last_error, "pending": s.lag, "mark": mark,
                "failing": s.failing, "retry_in_s": round(self.sub.retry.delay(s.failing), 3)}
        if fields["failing"] == 1:  # the first of a run of failures says where it came from
            fields["traceback"] = redact("".join(traceback.format_exception(exc)))[-3000:]
        log.warning("subscriber failed, will retry from the store", **fields)

    def _handled(self, new_mark: int, count: int, took: float) -> None:
        d, s = self.dispatcher, self.stats
        now = time.perf_counter()
        with d.cond:
            recovered = s.failing
            s.mark, s.failing = new_mark, 0
            s.handled += count
            s.batches += 1
            s.busy_s += took
            s.lag = max(0, d.head - new_mark)
            while self.commits and self.commits[0][0] <= new_mark:
                _, committed = self.commits.popleft()
                s.delivery_max_s = max(s.delivery_max_s, now - committed)
            d.cond.notify_all()
        if recovered:
            log.info("subscriber recovered", subscriber=s.name, failed_calls=recovered,
                     mark=new_mark, pending=s.lag)


class Dispatcher:
    """Runs each subscription on its own thread, fed from the store after each commit."""

    def __init__(self, store: SubscriberStore,
                 subscriptions: Sequence[Subscriber | Subscription] = ()) -> None:
        self.store = store
        self.cond = threading.Condition()
        self.head = 0
        self.stopping = False
        taken: set[str] = set()
        self._workers: list[_Worker] = []
        for item in subscriptions:
            sub = subscription(item, taken)
            if sub.name in taken:
                raise ValueError(f"two subscriptions are named {sub.name!r}")
            taken.add(sub.name)
            self._workers.append(_Worker(sub, store, self))

    def __bool__(self) -> bool:
        return bool(self._workers)

    def _store_head(self) -> int | None:
        """The store's last seq, or None when the store cannot be read right now (restarting,
        failing over): the subscribers then learn of the new events at the next ``notify``
        (the poll loop calls it at least every second when idle) and read them back."""
        try:
            return self.store.last_seq()
        except StoreError as exc:
            log.warning("could not read the store's last seq; the subscribers catch up at the "
                        "next commit", error=str(exc))
            return None

    def start(self) -> None:
        """Load the marks and start the threads (no-op when running or without subscribers)."""
        if not self._workers or any(w.thread and w.thread.is_alive() for w in self._workers):
            return
        head = self._store_head()
        with self.cond:
            self.head = max(self.head, head or 0)
            self.stopping = False
        for worker in self._workers:
            worker.begin(self.head)
            worker.thread = threading.Thread(target=worker.run, daemon=True,
                                             name=f"subscriber-{worker.sub.name}")
            worker.thread.start()

    def notify(self, committed_at: float | None = None, events: Sequence[CaseEvent] = (),
               origins: Sequence[Coordinates | None] | None = None) -> None:
        """A store commit added ``events`` (the new ones, in the order written, and where
        they came from): wake the subscribers. ``committed_at`` is its perf_counter time.
        Call it from the writer's thread, after each write that stored something."""
        if not self._workers:
            return
        head = self._store_head()
        at = time.perf_counter() if committed_at is None else committed_at
        with self.cond:
            before = self.head
        exact = head is not None and self._exactly(before, head, events)
        with self.cond:
            if head is None or head <= self.head:
                return
            commit = None
            if exact and self.head == before:  # nobody else wrote in between
                commit = _Commit(before, events,
                                 [None] * len(events) if origins is None else origins)
            self.head = head
            for worker in self._workers:
                worker.stats.lag = max(0, head - worker.stats.mark)
                if commit is not None:
                    worker.offer(commit)
                if len(worker.commits) >= _PENDING_COMMITS:  # keep the oldest time: max delay
                    worker.commits[-1] = (head, worker.commits[-1][1])
                else:
                    worker.commits.append((head, at))
            self.cond.notify_all()

    def _exactly(self, before: int, head: int, events: Sequence[CaseEvent]) -> bool:
        """Whether the seqs ``before + 1 .. head`` are exactly ``events``: as many, and the
        first of them is the first event (all of a commit's events are visible or none, so
        they then fill the range). The count alone could match another writer's events on
        PostgreSQL, where a commit may not be visible yet while one before it is."""
        if not events or head - before != len(events):
            return False
        try:
            first = self.store.since(before, 1)
        except StoreError:
            return False  # read back later instead
        return bool(first) and first[0][1].event_id == events[0].event_id

    def follow_partitions(self, partitions: Collection[Partition]) -> None:
        """This consumer owns ``partitions`` now: the followers hand over on their threads
        (the head is read again: they also get what the previous owners stored)."""
        followers = [w for w in self._workers if w.sub.follows_partitions]
        if not followers:
            return
        head = self._store_head()
        with self.cond:
            self.head = max(self.head, head or 0)
            for worker in followers:
                worker.target = frozenset(partitions)
                worker.stats.lag = max(0, self.head - worker.stats.mark)
            self.cond.notify_all()

    def drain(self, stall_timeout_s: float = 30.0, stop: threading.Event | None = None,
              poll_s: float = 0.1) -> bool:
        """Wait until every subscriber has handled everything stored so far (and followers
        follow their partitions); give up (False) when the ones behind made no progress for
        ``stall_timeout_s``, or on ``stop``."""
        if not self._workers:
            return True
        self.notify()
        with self.cond:
            target = self.head
            progress = [(w.stats.mark, w.stats.handovers) for w in self._workers]
            last_progress = time.monotonic()
            while True:
                behind = [w for w in self._workers
                          if w.stats.mark < target or not w.settled()]
                if not behind:
                    return True
                marks = [(w.stats.mark, w.stats.handovers) for w in self._workers]
                if marks != progress:
                    progress, last_progress = marks, time.monotonic()
                elif time.monotonic() - last_progress >= stall_timeout_s:
                    break
                if stop is not None and stop.is_set():
                    return False
                self.cond.wait(poll_s)
        for w in behind:
            log.warning("subscriber did not catch up before exit", subscriber=w.sub.name,
                        pending=target - w.stats.mark, failures=w.stats.failures,
                        error=w.stats.last_error)
        return False

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Let each subscriber finish the call it is in, then stop its thread; False if some
        call was still running after ``timeout_s`` (its thread is left to end on its own)."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        deadline = time.monotonic() + timeout_s
        stuck = []
        for worker in self._workers:
            if worker.thread is None:
                continue
            worker.thread.join(max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():
                stuck.append(worker.sub.name)
        for s in self.stats():
            log.info("subscriber stopped", subscriber=s.name, handled=s.handled,
                     read_back=s.read_back, mark=s.mark, pending=s.lag, failures=s.failures,
                     handovers=s.handovers, delivery_max_ms=round(s.delivery_max_s * 1000, 1))
        if stuck:
            log.warning("subscriber still busy at stop, left running",
                        subscribers=",".join(stuck), timeout_s=timeout_s)
        return not stuck

    def stats(self) -> list[SubscriberStats]:
        """A copy of each subscriber's stats, in subscription order."""
        with self.cond:
            return [replace(w.stats) for w in self._workers]

    @property
    def delivery_max_s(self) -> float:
        """Longest commit-to-handled time over all subscribers."""
        with self.cond:
            return max((w.stats.delivery_max_s for w in self._workers), default=0.0)
