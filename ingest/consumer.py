"""The ingest loop: poll a batch, decode each message, store the good ones, dead-letter the bad.

Order per batch, which is what makes "exactly once in the store" hold across crashes:
dead letters are published and acknowledged, then the valid events are written in one store
transaction (idempotent on ``event_id``), the rows the database refused for their content
(if any) are dead-lettered and acknowledged, and only then are the offsets committed. A crash
anywhere before the commit replays the batch; the store ignores what it already has.

Outages are waited out, never raised: a store that cannot be written, or a dead-letter topic
that does not acknowledge (the broker away, a letter too large for the topic: it is sent
truncated), holds the batch on the writer thread, retried with a growing wait and logged at
most once a minute (``ingest.batch_writer``), until it succeeds or the consumer is stopped
(then nothing of that batch is committed).

The parts, each in its module: the decode policy (``ingest.decode_policy``: a ``Policy`` per
message, a batch ``Prepared``), the writer (``ingest.batch_writer``: dead letters, the store,
the retries, the writer thread), the committer (``ingest.committer``: offset commits and the
rebalance hand-over) and the observer's reports (``ingest.batch_reports``). ``Consumer``
composes them and runs the poll loop; ``ConsumerOptions`` are its settings.

Pipelined. The store writes a batch on the consumer's writer thread while the poll loop polls
and decodes the next one (the database does its work without Python's GIL, the poll and the
decode need it); the loop then waits for that write, finishes the batch (subscribers, offsets)
and hands the next batch to the writer. One batch is in flight at most, batches are stored and
committed in poll order, and every wait for the store happens before the offsets it covers are
committed, so the order above holds per batch.

Each message gets an explicit policy: ``STORE`` (a valid event), ``DEAD_LETTER`` (cannot be
decoded, mapped or validated: sent unchanged to ``<topic>.dlq`` with the reason in headers) or
``SKIP`` (a tombstone: a message with no value carries no event). A valid event whose row the
database refuses (a NUL in text, a value out of range) is dead-lettered as ``store_rejected``
after the write, the rest of its batch stored.

Subscribers (the live map, the alert evaluator) never run in the poll loop: after each commit
the loop hands the new events to the ``Dispatcher`` (``ingest.subscribers``), whose threads feed
each subscriber in store order (reading the store where it is behind). A subscriber that fails
or is slow delays nobody but itself, and loses nothing.

Rebalances. The group rebalances only inside ``poll()`` (see ``ingest.transport``). When it
revokes partitions, the source's listener calls the consumer's handover first: it waits for the
batch in flight to be stored and has its offsets committed with the revoke, so the partition's
next owner starts right after it; the poll loop finishes that batch (its subscribers) before it
applies the partition changes. A clean handover re-delivers nothing
(``ConsumerStats.duplicates`` stays 0; a member killed between its store commit and its offset
commit leaves that one batch to be re-read, and the store keeps each event once). After each
poll the loop takes the partition changes from the source and tells the dispatcher, whose
partition-following subscribers (the live map) then drop the partitions lost and build the ones
gained from the store (``ingest.subscribers``). Each instance's live map is thus the state of
its own partitions; the union over the group is the DFG of the store. The web app and the alert
rules read the store, not a live map, so what they show does not depend on the instance that
serves it.

An optional observer (``on_batch``, e.g. ``backlight.metrics.Metrics.observe_batch``) gets a
``BatchReport`` after each handled batch, and lag-only reports while idle
(``ingest.batch_reports``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from ingest.batch_reports import BatchReports
from ingest.batch_writer import STORE_REJECTED, BatchWriter
from ingest.committer import HANDOVER_WAIT_S, Committer
from ingest.consumer_stats import BatchObserver, BatchReport, ConsumerStats
from ingest.dead_letters import dead_letter_topic
from ingest.decode_policy import DecodePolicy, Policy, Prepared
from ingest.dispatcher import Dispatcher
from ingest.retry import RETRY_S
from ingest.subscribers import Subscriber, Subscription
from ingest.transport import Message, Rebalancing, Sink, Source
from schemas.decode import SourceSpec
from schemas.errors import InvalidEvent
from schemas.event import CaseEvent
from storage import EventStore

log = structlog.stdlib.get_logger("backlight.consume")
__all__ = ["HANDOVER_WAIT_S", "STORE_REJECTED", "BatchReport", "Consumer", "ConsumerOptions",
           "ConsumerStats", "Policy", "Prepared", "Subscriber", "Subscription",
           "dead_letter_topic"]


@dataclass(frozen=True)
class ConsumerOptions:
    """How a ``Consumer`` batches, waits, commits and reports."""

    batch_size: int = 5000
    """Messages polled at most per batch."""
    poll_timeout_s: float = 0.5
    """How long a poll waits for the first message when nothing is being stored."""
    drain_timeout_s: float = 30.0
    """On exit when idle, how long the subscribers still behind may make no progress before
    ``run`` returns anyway."""
    stop_timeout_s: float = 10.0
    """On stop, how long ``run`` waits for the subscribers' calls in flight."""
    lag_interval_s: float = 1.0
    """With an observer, how often at most the lag per partition is looked up."""
    commit_interval_s: float = 1.0
    """Offsets of stored batches are committed at most this often while busy, and at once
    when caught up, on revoke and on exit (a crash re-reads what was stored since: the store
    keeps each event once)."""
    retry_s: tuple[float, ...] = RETRY_S
    """Waits between attempts to store a batch, and to deliver its dead letters."""


class Consumer:
    """Moves events from a ``Source`` into an ``EventStore``, dead-lettering through a ``Sink``."""

    def __init__(self, source: Source, dead_letters: Sink, store: EventStore,
                 specs: Mapping[str, SourceSpec],
                 subscribers: Sequence[Subscriber | Subscription] = (), *,
                 options: ConsumerOptions | None = None,
                 on_batch: BatchObserver | None = None) -> None:
        """``on_batch`` observes each batch (``BatchReport``); only with it does the consumer
        look up its lag per partition (``Source.lags``)."""
        self.options = options = options or ConsumerOptions()
        self.source = source
        self.store = store
        self.stats = ConsumerStats()
        self.policy = DecodePolicy(specs)
        self.writer = BatchWriter(store, dead_letters, self.stats, options.retry_s)
        self.committer = Committer(source, self.stats, options.commit_interval_s)
        self.reports = BatchReports(source, on_batch, options.lag_interval_s)
        self.dispatcher = Dispatcher(store, subscribers)
        self._head_looked_at = float("-inf")
        if isinstance(source, Rebalancing):
            source.set_handover(self._handover)

    def classify(self, msg: Message) -> tuple[Policy, CaseEvent | InvalidEvent | None]:
        """Decide what happens to one message, and why."""
        return self.policy.classify(msg)

    def prepare(self, batch: Sequence[Message]) -> Prepared:
        """Classify a batch: its events, its dead letters (``write`` delivers them) and the
        offsets it covers."""
        prepared = self.policy.prepare(batch)
        self.stats.skipped += prepared.skipped
        self.stats.seconds["decode"] += time.perf_counter() - prepared.started
        return prepared

    def write(self, prepared: Prepared) -> list[bool] | None:
        """Write a prepared batch (``BatchWriter.write``): which of its events were new, None
        when the consumer was stopped before it was stored."""
        return self.writer.write(prepared)

    def handle(self, batch: Sequence[Message]) -> None:
        """Decode a polled batch (while the one before it is being stored), finish the one
        before it, and hand this one to the writer thread (or write it here without one)."""
        prepared = self.prepare(batch)
        self.settle()
        if self.writer.threaded:
            self.writer.submit(prepared)
        else:
            self._finish(prepared, self.writer.write(prepared))

    def settle(self) -> None:
        """Wait for the batch being stored, if any, and finish it (subscribers, offsets)."""
        written = self.writer.settle()
        if written is not None:
            self._finish(*written)

    def _finish(self, prepared: Prepared, new: list[bool] | None) -> None:
        if new is None:  # stopped while the store could not be written: nothing committed
            return
        self.finish(prepared, new, time.perf_counter())
        self.reports.batch(prepared, new)

    def finish(self, prepared: Prepared, new: list[bool], stored_at: float) -> None:
        """After the store commit: hand the new events to the subscribers' threads, commit
        the offsets, and count."""
        fresh = sum(new)
        if fresh and self.dispatcher:
            t = time.perf_counter()
            events, origins = prepared.events, prepared.origins
            if fresh < len(events):  # some were stored already: hand over only the new ones
                events = [e for e, n in zip(events, new, strict=True) if n]
                origins = [o for o, n in zip(origins, new, strict=True) if n]
            self.dispatcher.notify(stored_at, events, origins)
            self.stats.seconds["dispatch"] += time.perf_counter() - t
        self.committer.stored(prepared.next_offsets)
        self._count(len(prepared.batch), len(prepared.events), fresh, prepared.bad)
        self.stats.busy_until = time.monotonic()

    def commit(self) -> None:
        """Commit the offsets of the batches stored so far (and finished)."""
        self.committer.commit()

    def _handover(self) -> None:
        """The source's revoke listener calls this: the committer hands over the offsets
        stored, and those of the batch being stored (``Committer.handover``)."""
        self.committer.handover(self.writer.in_flight)

    def _count(self, messages: int, valid: int, new: int, bad: Counter[str]) -> None:
        s = self.stats
        s.batches += 1
        s.messages += messages
        s.stored += new
        s.duplicates += valid - new
        s.dead_letters += sum(bad.values())
        s.dead_letter_reasons.update(bad)
        s.last_commit_at = time.time()
        log.info("batch committed", messages=messages, stored=new, duplicates=valid - new,
                 dead_letters=sum(bad.values()), **{f"dlq.{k}": v for k, v in bad.items()})

    def run(self, stop: threading.Event | None = None,
            exit_when_idle_s: float | None = None) -> ConsumerStats:
        """Consume until ``stop`` is set (then let the subscribers finish their calls in
        flight), or until caught up and idle for ``exit_when_idle_s`` (then wait until the
        subscribers have handled everything stored, unless they stall)."""
        stop = stop or threading.Event()
        self.dispatcher.start()
        self.writer.start(stop)
        try:
            try:
                caught_up = self._poll_loop(stop, exit_when_idle_s)
            finally:
                self.settle()  # the batch in flight is stored and committed before leaving
                self.commit()
            if caught_up and not stop.is_set():
                self.dispatcher.drain(self.options.drain_timeout_s, stop)
        finally:
            self.writer.shutdown()
            self.dispatcher.stop(self.options.stop_timeout_s)
            subscribers = self.dispatcher.stats()
            self.stats.drained = not any(s.lag for s in subscribers)
            self.stats.subscribers = {s.name: s for s in subscribers}
            self.stats.delivery_max_s = self.dispatcher.delivery_max_s
            self.stats.seconds["subscribers"] = sum(s.busy_s for s in subscribers)
        return self.stats

    def _follow_rebalances(self, source: Rebalancing) -> None:
        """Apply the partition changes made during the last poll: count and log them, and
        have the partition-following subscribers hand over."""
        changes = source.rebalances()
        if not changes:
            return
        self.settle()  # its subscribers get the batch stored before the partitions change
        owned = set(self.stats.partitions)
        for change in changes:
            if change.kind == "assigned":
                owned |= change.partitions
            else:
                owned -= change.partitions
            log.info("partitions " + change.kind,
                     partitions=",".join(f"{t}:{p}" for t, p in sorted(change.partitions)),
                     owned=len(owned))
        self.stats.rebalances += len(changes)
        self.stats.lost += sum(change.kind == "lost" for change in changes)
        self.stats.partitions = frozenset(owned)
        self.dispatcher.follow_partitions(self.stats.partitions)

    def _poll_loop(self, stop: threading.Event, exit_when_idle_s: float | None) -> bool:
        """Poll and handle batches until stopped (False) or caught up and idle (True)."""
        idle_since: float | None = None
        options = self.options
        while not stop.is_set():
            t0 = time.perf_counter()
            # With a batch being stored, take only what the client has fetched already: when
            # nothing is there, that batch is finished (its offsets committed) without waiting.
            writing = self.writer.in_flight is not None
            batch = self.source.poll(0.0 if writing else options.poll_timeout_s, options.batch_size)
            if isinstance(self.source, Rebalancing):
                self._follow_rebalances(self.source)
            if batch:
                self.stats.seconds["poll"] += time.perf_counter() - t0
                if self.stats.busy_since is None:
                    self.stats.busy_since = time.monotonic()
                self.handle(batch)
                idle_since = None
                continue
            if writing:
                self.settle()
                continue
            self.commit()  # caught up (or waiting for partitions): nothing left to batch
            if not self.source.assigned():
                # A member without partitions (more members than partitions, or waiting for
                # its assignment) still reports the group's lag: it is healthy, and readiness
                # judges a consumer by its reports.
                if self.reports.observed:
                    self.reports.idle(exiting=False)
                continue
            now = time.monotonic()
            if idle_since is None:
                idle_since = now
            if now - self._head_looked_at >= options.lag_interval_s:
                self._head_looked_at = now  # subscribers also get what other instances stored
                self.dispatcher.notify()
            if exit_when_idle_s is None or now - idle_since < exit_when_idle_s:
                if self.reports.observed:
                    self.reports.idle(exiting=False)
            elif self.reports.idle(exiting=True) == 0:
                log.info("caught up and idle, exiting", idle_s=round(now - idle_since, 1),
                         stored=self.stats.stored)
                return True
        return False
