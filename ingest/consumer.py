"""The ingest loop: poll a batch, decode each message, store the good ones, dead-letter the bad.

Order per batch, which is what makes "exactly once in the store" hold across crashes:
dead letters are published and acknowledged, then the valid events are written in one store
transaction (idempotent on ``event_id``), the rows the database refused for their content
(if any) are dead-lettered and acknowledged, and only then are the offsets committed. A crash
anywhere before the commit replays the batch; the store ignores what it already has.

Outages are waited out, never raised: a store that cannot be written, or a dead-letter topic
that does not acknowledge (the broker away, a letter too large for the topic: it is sent
truncated), holds the batch on the writer thread, retried with a growing wait and logged at
most once a minute (``ingest.retry``, ``ingest.dead_letters``, ``ingest.store_writes``),
until it succeeds or the consumer is stopped (then nothing of that batch is committed).

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
``BatchReport`` after each handled batch, and lag-only reports while idle; it runs in the poll
loop, so it must be quick, and an exception it raises is logged and otherwise ignored.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from ingest.consumer_stats import BatchObserver, BatchReport, ConsumerStats
from ingest.dead_letters import DeadLetters, Letter, dead_letter_topic, letter
from ingest.dispatcher import Dispatcher
from ingest.retry import RETRY_S
from ingest.store_writes import write_batch
from ingest.subscribers import Subscriber, Subscription
from ingest.transport import Message, Partition, Rebalancing, Sink, Source
from schemas.decode import SourceSpec, decode
from schemas.errors import InvalidEvent
from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import EventStore

log = logging.getLogger("backlight.consume")
__all__ = ["BatchReport", "Consumer", "ConsumerStats", "Policy", "Subscriber", "Subscription",
           "dead_letter_topic"]

STORE_REJECTED = "store_rejected"
"""The dead-letter code of a valid event whose row the database refused for its content."""
HANDOVER_WAIT_S = 10.0
"""On revoke, how long the handover waits for the batch being stored (the group waits too); a
batch stored later is not committed with the revoke, and its partitions' next owner re-reads it."""


class Policy(enum.Enum):
    STORE = "store"
    DEAD_LETTER = "dead_letter"
    SKIP = "skip"


@dataclass
class Prepared:
    """A decoded batch: the events to store, the dead letters' reasons, the offsets to commit."""

    batch: Sequence[Message]
    events: list[CaseEvent] = field(default_factory=list)
    origins: list[Coordinates | None] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    """The message of each event (dead-lettered as it is if the database refuses the row)."""
    letters: list[Letter] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    bad: Counter[str] = field(default_factory=Counter)
    bad_by_topic: Counter[tuple[str, str]] = field(default_factory=Counter)
    store_seconds: float | None = None
    """How long the store took to write it (its transaction, commit included); None before."""
    started: float = 0.0
    """``time.perf_counter()`` when the poll handed the batch over."""


class Consumer:
    """Moves events from a ``Source`` into an ``EventStore``, dead-lettering through a ``Sink``."""

    def __init__(self, source: Source, dead_letters: Sink, store: EventStore,
                 specs: Mapping[str, SourceSpec],
                 subscribers: Sequence[Subscriber | Subscription] = (),
                 batch_size: int = 5000, poll_timeout_s: float = 0.5, *,
                 drain_timeout_s: float = 30.0, stop_timeout_s: float = 10.0,
                 on_batch: BatchObserver | None = None, lag_interval_s: float = 1.0,
                 commit_interval_s: float = 1.0) -> None:
        """``drain_timeout_s``: on exit when idle, how long the subscribers still behind may
        make no progress before ``run`` returns anyway; ``stop_timeout_s``: on stop, how long
        ``run`` waits for calls in flight. ``on_batch`` observes each batch (``BatchReport``);
        only with it does the consumer look up its lag per partition (``Source.lags``), at most
        every ``lag_interval_s``. Offsets of stored batches are committed at most every
        ``commit_interval_s`` while busy, and at once when caught up, on revoke and on exit (a
        crash re-reads what was stored since: the store keeps each event once)."""
        self.source = source
        self.dead_letters = DeadLetters(dead_letters)
        self.retry_s = RETRY_S
        """Waits between attempts to store a batch or deliver its dead letters."""
        self.store = store
        self.specs = dict(specs)
        self.dispatcher = Dispatcher(store, subscribers)
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.stats = ConsumerStats()
        self.on_batch = on_batch
        self.lag_interval_s = lag_interval_s
        self.commit_interval_s = commit_interval_s
        self._pending: dict[Partition, int] = {}  # stored, not committed yet: next offsets
        self._committed_at = float("-inf")
        self._lag_looked_at = float("-inf")
        self._head_looked_at = float("-inf")
        self._stop = threading.Event()
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: tuple[Prepared, Future[list[bool] | None]] | None = None
        if isinstance(source, Rebalancing):
            source.set_handover(self._handover)

    def classify(self, msg: Message) -> tuple[Policy, CaseEvent | InvalidEvent | None]:
        """Decide what happens to one message, and why."""
        if msg.value is None:
            return Policy.SKIP, None
        spec = self.specs.get(msg.topic)
        if spec is None:
            return Policy.DEAD_LETTER, InvalidEvent("unknown_topic",
                                                    f"no source is configured for {msg.topic}")
        try:
            return Policy.STORE, decode(msg.value, msg.headers, spec)
        except InvalidEvent as err:
            return Policy.DEAD_LETTER, err

    def prepare(self, batch: Sequence[Message]) -> Prepared:
        """Classify a batch: its events, its dead letters (``write`` delivers them) and the
        offsets it covers."""
        t0 = time.perf_counter()
        out = Prepared(batch, started=t0)
        events, origins, next_offsets, specs = out.events, out.origins, out.next_offsets, self.specs
        messages = out.messages
        for msg in batch:
            topic, partition, offset, value = msg.topic, msg.partition, msg.offset, msg.value
            spec = specs.get(topic)
            if value is not None and spec is not None:
                # The usual message, inlined (this loop runs once per event): what ``classify``
                # decides for a value on a configured topic, STORE unless the decode refuses it.
                try:
                    event = decode(value, msg.headers, spec)
                except InvalidEvent as err:
                    self._dead_letter(out, msg, err)
                else:
                    events.append(event)
                    origins.append(Coordinates(topic, partition, offset))
                    messages.append(msg)
            else:
                policy, outcome = self.classify(msg)
                if policy is Policy.DEAD_LETTER and isinstance(outcome, InvalidEvent):
                    self._dead_letter(out, msg, outcome)
                else:
                    self.stats.skipped += 1
            tp = (topic, partition)
            if offset >= next_offsets.get(tp, 0):
                next_offsets[tp] = offset + 1
        self.stats.seconds["decode"] += time.perf_counter() - t0
        return out

    def _dead_letter(self, out: Prepared, msg: Message, error: InvalidEvent) -> None:
        out.letters.append(letter(msg, error.code, str(error)))
        out.bad[error.code] += 1
        out.bad_by_topic[(msg.topic, error.code)] += 1

    def _deliver(self, letters: list[Letter]) -> bool:
        """Deliver dead letters, waiting out the broker (False: stopped first)."""
        t0 = time.perf_counter()
        try:
            return self.dead_letters.publish(letters, self._stop)
        finally:
            self.stats.seconds["dead_letter"] += time.perf_counter() - t0

    def write(self, prepared: Prepared) -> list[bool] | None:
        """Deliver a prepared batch's dead letters, store its events in one transaction, and
        dead-letter the rows the database refused (``store_rejected``; they leave
        ``prepared.events``); say which events were new. While the store cannot be written
        (a database restarting or failing over, a locked file) or the dead-letter topic does
        not acknowledge, the same work is tried again after a growing wait; None when the
        consumer is stopped meanwhile: the batch is not committed, so it is read again by
        the partition's next owner (or this consumer restarted), and the store keeps each
        event once."""
        if prepared.letters and not self._deliver(prepared.letters):
            return None
        written = write_batch(self.store, prepared.events, prepared.origins, self._stop, log,
                              self.retry_s)
        if written is None:
            return None
        prepared.store_seconds = written.seconds
        self.stats.seconds["store"] += written.seconds
        if not written.refused:
            return written.new
        refused = {r.index: r.reason for r in written.refused}
        rejected = [letter(prepared.messages[i], STORE_REJECTED,
                           f"{STORE_REJECTED}: the database refused the event: {reason}")
                    for i, reason in refused.items()]
        if not self._deliver(rejected):
            return None
        for i in refused:
            prepared.bad[STORE_REJECTED] += 1
            prepared.bad_by_topic[(prepared.messages[i].topic, STORE_REJECTED)] += 1
        keep = [i for i in range(len(prepared.events)) if i not in refused]
        prepared.events = [prepared.events[i] for i in keep]
        prepared.origins = [prepared.origins[i] for i in keep]
        prepared.messages = [prepared.messages[i] for i in keep]
        return [written.new[i] for i in keep]

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
        for tp, offset in prepared.next_offsets.items():
            self._pending[tp] = max(offset, self._pending.get(tp, 0))
        if time.monotonic() - self._committed_at >= self.commit_interval_s:
            self.commit()
        self._count(len(prepared.batch), len(prepared.events), fresh, prepared.bad)
        self.stats.busy_until = time.monotonic()

    def handle(self, batch: Sequence[Message]) -> None:
        """Decode a polled batch (while the one before it is being stored), finish the one
        before it, and hand this one to the writer thread (or write it here without one)."""
        prepared = self.prepare(batch)
        self.settle()
        if self._writer is None:
            self._finish(prepared, self.write(prepared))
            return
        self._in_flight = (prepared, self._writer.submit(self.write, prepared))

    def settle(self) -> None:
        """Wait for the batch being stored, if any, and finish it (subscribers, offsets)."""
        if self._in_flight is None:
            return
        (prepared, writing), self._in_flight = self._in_flight, None
        t0 = time.perf_counter()
        new = writing.result()
        self.stats.seconds["store_wait"] += time.perf_counter() - t0
        self._finish(prepared, new)

    def _finish(self, prepared: Prepared, new: list[bool] | None) -> None:
        if new is None:  # stopped while the store could not be written: nothing committed
            return
        self.finish(prepared, new, time.perf_counter())
        if self.on_batch is not None:
            self._observe(self._report(prepared.batch, prepared, new,
                                       time.perf_counter() - prepared.started))

    def commit(self) -> None:
        """Commit the offsets of the batches stored so far (and finished)."""
        if not self._pending:
            return
        t0 = time.perf_counter()
        pending, self._pending = self._pending, {}
        self.source.commit(pending)
        self._committed_at = time.monotonic()
        self.stats.seconds["commit"] += time.perf_counter() - t0

    def _handover(self) -> None:
        """The source's revoke listener calls this (on Kafka's IO thread, while the poll loop
        waits in ``poll``): record as handled the offsets stored and not committed yet, after
        waiting for the batch being stored, so the revoke commits them. The poll loop finishes
        that batch (its subscribers) after the poll."""
        if not isinstance(self.source, Rebalancing):
            return
        if self._pending:
            self.source.handled(self._pending)
        in_flight = self._in_flight
        if in_flight is None:
            return
        prepared, writing = in_flight
        try:
            new = writing.result(timeout=HANDOVER_WAIT_S)
        except FutureTimeout:
            log.warning("the batch being stored was not stored in time for the handover; the "
                        "partitions' next owner re-reads it", extra={"fields": {
                            "events": len(prepared.events), "waited_s": HANDOVER_WAIT_S}})
            return
        except Exception:  # a bug in the write: the poll loop's ``settle`` raises it
            return
        if new is not None:
            self.source.handled(prepared.next_offsets)

    def _report(self, batch: Sequence[Message], prepared: Prepared, new: list[bool],
                seconds: float) -> BatchReport:
        stored: Counter[str] = Counter()
        valid: Counter[str] = Counter()
        for origin, fresh in zip(prepared.origins, new, strict=True):
            topic = origin.topic if origin else ""
            valid[topic] += 1
            stored[topic] += fresh
        return BatchReport(
            consumed=dict(Counter(m.topic for m in batch)),
            stored={t: n for t, n in stored.items() if n},
            duplicates={t: valid[t] - stored[t] for t in valid if valid[t] > stored[t]},
            dead_letters=dict(prepared.bad_by_topic), seconds=seconds,
            store_seconds=prepared.store_seconds, lags=self._lags())

    def _lags(self, force: bool = False) -> dict[tuple[str, int], int] | None:
        """The lag per partition, for the observer: None without one, when the last look was
        less than ``lag_interval_s`` ago (unless ``force``), or when the source cannot say."""
        now = time.monotonic()
        if self.on_batch is None or (not force and now - self._lag_looked_at < self.lag_interval_s):
            return None
        self._lag_looked_at = now
        try:
            return dict(self.source.lags())
        except Exception as exc:  # a metric must never stop ingest
            log.warning("could not look up the consumer lag: %r", exc)
            return None

    def _observe(self, report: BatchReport) -> None:
        assert self.on_batch is not None
        try:
            self.on_batch(report)
        except Exception:  # the observer's failure is not ingest's
            log.exception("the batch observer failed; ingest goes on")

    def _lag_when_idle(self, exiting: bool) -> int | None:
        """The total lag while idle (None when not looked up); with an observer, reported per
        partition (always when about to exit, else at most every ``lag_interval_s``)."""
        if self.on_batch is None:
            return self.source.lag()
        lags = self._lags(force=exiting)
        if lags is not None:
            self._observe(BatchReport(lags=lags))
            return sum(lags.values())
        return self.source.lag() if exiting else None

    def _count(self, messages: int, valid: int, new: int, bad: Counter[str]) -> None:
        s = self.stats
        s.batches += 1
        s.messages += messages
        s.stored += new
        s.duplicates += valid - new
        s.dead_letters += sum(bad.values())
        s.dead_letter_reasons.update(bad)
        s.last_commit_at = time.time()
        log.info("batch committed", extra={"fields": {
            "messages": messages, "stored": new, "duplicates": valid - new,
            "dead_letters": sum(bad.values()), **{f"dlq.{k}": v for k, v in bad.items()}}})

    def run(self, stop: threading.Event | None = None,
            exit_when_idle_s: float | None = None) -> ConsumerStats:
        """Consume until ``stop`` is set (then let the subscribers finish their calls in
        flight), or until caught up and idle for ``exit_when_idle_s`` (then wait until the
        subscribers have handled everything stored, unless they stall)."""
        stop = self._stop = stop or threading.Event()
        self.dispatcher.start()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="backlight-store")
        try:
            try:
                caught_up = self._poll_loop(stop, exit_when_idle_s)
            finally:
                self.settle()  # the batch in flight is stored and committed before leaving
                self.commit()
            if caught_up and not stop.is_set():
                self.dispatcher.drain(self.drain_timeout_s, stop)
        finally:
            self._writer.shutdown()
            self._writer = None
            self.dispatcher.stop(self.stop_timeout_s)
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
            log.info("partitions " + change.kind, extra={"fields": {
                "partitions": ",".join(f"{t}:{p}" for t, p in sorted(change.partitions)),
                "owned": len(owned)}})
        self.stats.rebalances += len(changes)
        self.stats.partitions = frozenset(owned)
        self.dispatcher.follow_partitions(self.stats.partitions)

    def _poll_loop(self, stop: threading.Event, exit_when_idle_s: float | None) -> bool:
        """Poll and handle batches until stopped (False) or caught up and idle (True)."""
        idle_since: float | None = None
        while not stop.is_set():
            t0 = time.perf_counter()
            # With a batch being stored, take only what the client has fetched already: when
            # nothing is there, that batch is finished (its offsets committed) without waiting.
            writing = self._in_flight is not None
            batch = self.source.poll(0.0 if writing else self.poll_timeout_s, self.batch_size)
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
                if self.on_batch is not None:
                    self._lag_when_idle(exiting=False)
                continue
            now = time.monotonic()
            if idle_since is None:
                idle_since = now
            if now - self._head_looked_at >= self.lag_interval_s:
                self._head_looked_at = now  # subscribers also get what other instances stored
                self.dispatcher.notify()
            if exit_when_idle_s is None or now - idle_since < exit_when_idle_s:
                if self.on_batch is not None:
                    self._lag_when_idle(exiting=False)
            elif self._lag_when_idle(exiting=True) == 0:
                log.info("caught up and idle, exiting", extra={"fields": {
                    "idle_s": round(now - idle_since, 1), "stored": self.stats.stored}})
                return True
        return False
