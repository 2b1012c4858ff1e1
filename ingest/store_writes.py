"""Writing a consumer's batch to the store: transient errors waited out, refused rows set aside.

A store write fails in one of two ways (``ingest.errors.rejects_rows`` tells them apart):
- transient (``StoreError``): the database is restarting or unreachable, a lock or statement
  timed out, the disk is full. The same write is tried again after a growing wait, without
  end, logged at most once a minute (``ingest.retry``), until it succeeds or the consumer is
  stopped;
- a row refused for its content (``RowRejected``: a NUL in text, a value out of range). The
  batch is split in halves, each written on its own, and so on down to single rows: the rows
  refused alone are returned with the database's reason (the consumer dead-letters them as
  ``store_rejected``), every other row is stored. One refused row in a batch of n costs about
  2 log2(n) extra writes (26 for 5,000), each its own transaction; a transient failure in
  the middle retries that part only, so the parts stored before are not written again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ingest.errors import RowRejected, StoreError
from ingest.retry import RETRY_S, Log, Retrying
from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import EventStore


@dataclass(frozen=True)
class Refused:
    """A row the database refused: its index in the batch and the database's reason."""

    index: int
    reason: str


@dataclass
class Written:
    """The outcome of a batch: per event whether it was new (False for a refused one), and
    the refused rows in batch order."""

    new: list[bool]
    refused: list[Refused] = field(default_factory=list)
    seconds: float = 0.0
    """Time in the store's writes that stored something (not in failed ones or waits)."""


def write_batch(store: EventStore, events: Sequence[CaseEvent],
                origins: Sequence[Coordinates | None], stop: threading.Event,
                log: Log, waits: tuple[float, ...] = RETRY_S) -> Written | None:
    """Store ``events``, setting aside the rows the database refuses; None when ``stop`` is
    set while the store cannot be written (nothing of the rest is known to be stored)."""
    new = [False] * len(events)
    refused: list[Refused] = []
    todo = [(0, len(events))] if events else []  # ranges still to write, the next one last
    retrying = Retrying("storing the batch", stop, log, waits)
    seconds = 0.0
    while todo:
        lo, hi = todo[-1]
        t0 = time.perf_counter()
        try:
            flags = store.write(events[lo:hi], origins[lo:hi])
        except RowRejected as exc:
            todo.pop()
            if hi - lo == 1:
                refused.append(Refused(lo, exc.reason))
                continue
            mid = (lo + hi) // 2
            todo += [(mid, hi), (lo, mid)]  # the first half first: "new" is by first occurrence
            continue
        except StoreError as exc:
            if not retrying.failed(exc, events=hi - lo, batch=len(events)):
                return None
            continue
        seconds += time.perf_counter() - t0
        todo.pop()
        new[lo:hi] = flags
    retrying.succeeded()
    if refused:
        refused.sort(key=lambda r: r.index)
        log.warning("the store refused rows of the batch; they go to the dead-letter topic",
                    events=len(events), refused=len(refused), reason=refused[0].reason)
    return Written(new, refused, seconds)
