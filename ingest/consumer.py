"""The ingest loop: poll a batch, decode each message, store the good ones, dead-letter the bad.

Order per batch, which is what makes "exactly once in the store" hold across crashes:
dead letters are published and acknowledged, then the valid events are written in one store
transaction (idempotent on ``event_id``), and only then are the offsets committed. A crash
anywhere before the commit replays the batch; the store ignores what it already has.

Each message gets an explicit policy: ``STORE`` (a valid event), ``DEAD_LETTER`` (cannot be
decoded, mapped or validated: sent unchanged to ``<topic>.dlq`` with the reason in headers) or
``SKIP`` (a tombstone: a message with no value carries no event).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ingest.store import Coordinates, EventStore
from ingest.transport import Message, Sink, Source
from schemas.decode import SourceSpec, decode
from schemas.errors import InvalidEvent
from schemas.event import CaseEvent

log = logging.getLogger("backlight.consume")
Subscriber = Callable[[Sequence[CaseEvent], Sequence[Coordinates | None]], None]
"""Called after each store commit with the batch's newly stored events and where each came
from in Kafka (the live map, the alert evaluator)."""

DLQ_SUFFIX = ".dlq"


class Policy(enum.Enum):
    STORE = "store"
    DEAD_LETTER = "dead_letter"
    SKIP = "skip"


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
    """Time spent per phase: poll, decode, dead_letter, store, commit, subscribers."""
    busy_since: float | None = None
    """Monotonic time the first batch arrived; with ``busy_until`` (the last batch handled)
    it gives the ingest rate, without the group join and the idle tail."""
    busy_until: float | None = None
    delivery_max_s: float = 0.0
    """Longest time from a batch's store commit to its subscribers having it (e.g. live map)."""


def dead_letter_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def dead_letter_headers(msg: Message, error: InvalidEvent) -> list[tuple[str, bytes | None]]:
    """The original headers plus why the message was rejected and where it came from."""
    ours = [
        ("backlight.error", str(error)[:1000].encode()),
        ("backlight.error.code", error.code.encode()),
        ("backlight.source.topic", msg.topic.encode()),
        ("backlight.source.partition", str(msg.partition).encode()),
        ("backlight.source.offset", str(msg.offset).encode()),
    ]
    return [*msg.headers, *ours]


@dataclass
class Prepared:
    """A decoded batch: the events to store, the dead letters' reasons, the offsets to commit."""

    messages: int
    events: list[CaseEvent] = field(default_factory=list)
    origins: list[Coordinates | None] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    bad: Counter[str] = field(default_factory=Counter)


class Consumer:
    """Moves events from a ``Source`` into an ``EventStore``, dead-lettering through a ``Sink``."""

    def __init__(self, source: Source, dead_letters: Sink, store: EventStore,
                 specs: Mapping[str, SourceSpec], subscribers: Sequence[Subscriber] = (),
                 batch_size: int = 5000, poll_timeout_s: float = 0.5) -> None:
        self.source = source
        self.dead_letters = dead_letters
        self.store = store
        self.specs = dict(specs)
        self.subscribers = list(subscribers)
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.stats = ConsumerStats()

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
        """Classify a batch; publish its dead letters and wait for the broker to have them."""
        t0 = time.perf_counter()
        out = Prepared(len(batch))
        for msg in batch:
            policy, outcome = self.classify(msg)
            if policy is Policy.STORE and isinstance(outcome, CaseEvent):
                out.events.append(outcome)
                out.origins.append(Coordinates(msg.topic, msg.partition, msg.offset))
            elif policy is Policy.DEAD_LETTER and isinstance(outcome, InvalidEvent):
                self.dead_letters.send(dead_letter_topic(msg.topic), msg.value or b"", msg.key,
                                       dead_letter_headers(msg, outcome))
                out.bad[outcome.code] += 1
            else:
                self.stats.skipped += 1
            tp = (msg.topic, msg.partition)
            out.next_offsets[tp] = max(out.next_offsets.get(tp, 0), msg.offset + 1)
        t1 = time.perf_counter()
        if out.bad:
            self.dead_letters.flush()
        self.stats.seconds["decode"] += t1 - t0
        self.stats.seconds["dead_letter"] += time.perf_counter() - t1
        return out

    def write(self, prepared: Prepared) -> list[bool]:
        """Store a prepared batch in one transaction; say which events were new."""
        t0 = time.perf_counter()
        new = self.store.write(prepared.events, prepared.origins)
        self.stats.seconds["store"] += time.perf_counter() - t0
        return new

    def finish(self, prepared: Prepared, new: list[bool], stored_at: float) -> None:
        """After the store commit: commit the offsets, count, and hand the new events on."""
        t0 = time.perf_counter()
        self.source.commit(prepared.next_offsets)
        t1 = time.perf_counter()
        self.stats.seconds["commit"] += t1 - t0
        fresh = sum(new)
        self._count(prepared.messages, len(prepared.events), fresh, prepared.bad)
        if fresh and self.subscribers:
            events = [e for e, n in zip(prepared.events, new, strict=True) if n]
            origins = [o for o, n in zip(prepared.origins, new, strict=True) if n]
            for subscriber in self.subscribers:
                subscriber(events, origins)
            done = time.perf_counter()
            self.stats.seconds["subscribers"] += done - t1
            self.stats.delivery_max_s = max(self.stats.delivery_max_s, done - stored_at)
        self.stats.busy_until = time.monotonic()

    def handle(self, batch: Sequence[Message]) -> int:
        """Handle one polled batch end to end, in this thread; return the newly stored count."""
        prepared = self.prepare(batch)
        new = self.write(prepared)
        self.finish(prepared, new, time.perf_counter())
        return sum(new)

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
        """Consume until ``stop`` is set, or until caught up and idle for ``exit_when_idle_s``."""
        stop = stop or threading.Event()
        idle_since: float | None = None
        while not stop.is_set():
            t0 = time.perf_counter()
            batch = self.source.poll(self.poll_timeout_s, self.batch_size)
            if batch:
                self.stats.seconds["poll"] += time.perf_counter() - t0
                if self.stats.busy_since is None:
                    self.stats.busy_since = time.monotonic()
                self.handle(batch)
                idle_since = None
                continue
            if exit_when_idle_s is None or not self.source.assigned():
                continue
            now = time.monotonic()
            if idle_since is None:
                idle_since = now
            elif now - idle_since >= exit_when_idle_s and self.source.lag() == 0:
                log.info("caught up and idle, exiting", extra={"fields": {
                    "idle_s": round(now - idle_since, 1), "stored": self.stats.stored}})
                break
        return self.stats
