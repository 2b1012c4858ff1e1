"""Writing a prepared batch: its dead letters delivered, its events stored, refused rows dead-lettered.

Order per batch: the dead letters are published and acknowledged, then the valid events are
written in one store transaction (idempotent on ``event_id``), then the rows the database
refused for their content (if any) are dead-lettered as ``store_rejected`` and acknowledged;
the consumer commits the batch's offsets only after all that.

Outages are waited out, never raised: a store that cannot be written, or a dead-letter topic
that does not acknowledge, holds the batch, retried with a growing wait and logged at most
once a minute (``ingest.retry``, ``ingest.dead_letters``, ``ingest.store_writes``), until it
succeeds or ``stop`` is set (then ``write`` returns None: nothing of that batch is committed).

``BatchWriter`` also runs the writes on its own thread (``start``), one batch in flight at
most (``submit``, ``settle``): the store writes a batch while the poll loop polls and decodes
the next one.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

from ingest.consumer_stats import ConsumerStats
from ingest.dead_letters import DeadLetters, Letter, letter
from ingest.decode_policy import Prepared
from ingest.retry import RETRY_S
from ingest.store_writes import write_batch
from ingest.transport import Sink
from storage import EventStore

log = structlog.stdlib.get_logger("backlight.consume")

STORE_REJECTED = "store_rejected"
"""The dead-letter code of a valid event whose row the database refused for its content."""
InFlight = tuple[Prepared, "Future[list[bool] | None]"]
"""A batch handed to the writer thread, and its write: which events were new (None: stopped)."""


class BatchWriter:
    """Writes prepared batches into ``store``, dead-lettering through ``dead_letters``;
    counts the time of each phase in ``stats.seconds`` (dead_letter, store, store_wait)."""

    def __init__(self, store: EventStore, dead_letters: Sink, stats: ConsumerStats,
                 retry_s: tuple[float, ...] = RETRY_S) -> None:
        self.store = store
        self.dead_letters = DeadLetters(dead_letters, retry_s)
        self.retry_s = retry_s
        """Waits between attempts to store a batch."""
        self.stats = stats
        self.stop = threading.Event()
        """Set: the retries give up (the consumer is stopping)."""
        self._thread: ThreadPoolExecutor | None = None
        self.in_flight: InFlight | None = None
        """The batch being written on the writer thread, if any."""

    def write(self, prepared: Prepared) -> list[bool] | None:
        """Deliver a prepared batch's dead letters, store its events in one transaction, and
        dead-letter the rows the database refused (``store_rejected``; they leave
        ``prepared.events``); say which events were new. While the store cannot be written
        (a database restarting or failing over, a locked file) or the dead-letter topic does
        not acknowledge, the same work is tried again after a growing wait; None when
        stopped meanwhile: the batch is not committed, so it is read again by the
        partition's next owner (or this consumer restarted), and the store keeps each event
        once."""
        if prepared.letters and not self._deliver(prepared.letters):
            return None
        written = write_batch(self.store, prepared.events, prepared.origins, self.stop, log,
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
            prepared.count_bad(prepared.messages[i].topic, STORE_REJECTED)
        keep = [i for i in range(len(prepared.events)) if i not in refused]
        prepared.events = [prepared.events[i] for i in keep]
        prepared.origins = [prepared.origins[i] for i in keep]
        prepared.messages = [prepared.messages[i] for i in keep]
        return [written.new[i] for i in keep]

    def _deliver(self, letters: list[Letter]) -> bool:
        """Deliver dead letters, waiting out the broker (False: stopped first)."""
        t0 = time.perf_counter()
        try:
            return self.dead_letters.publish(letters, self.stop)
        finally:
            self.stats.seconds["dead_letter"] += time.perf_counter() - t0

    def start(self, stop: threading.Event) -> None:
        """Start the writer thread; ``stop`` ends the retries of the writes."""
        self.stop = stop
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="backlight-store")

    def shutdown(self) -> None:
        """Stop the writer thread (after the write in flight); writes then run in the caller."""
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None

    @property
    def threaded(self) -> bool:
        """Whether the writer thread runs (between ``start`` and ``shutdown``)."""
        return self._thread is not None

    def submit(self, prepared: Prepared) -> None:
        """Have the writer thread write ``prepared`` (``settle`` takes the outcome)."""
        assert self._thread is not None, "submit needs the writer thread (start)"
        self.in_flight = (prepared, self._thread.submit(self.write, prepared))

    def settle(self) -> tuple[Prepared, list[bool] | None] | None:
        """Wait for the batch in flight, if any: it, and which of its events were new (None:
        stopped before it was stored). Raises what the write raised (a bug)."""
        if self.in_flight is None:
            return None
        (prepared, writing), self.in_flight = self.in_flight, None
        t0 = time.perf_counter()
        new = writing.result()
        self.stats.seconds["store_wait"] += time.perf_counter() - t0
        return prepared, new
