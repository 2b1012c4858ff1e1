"""Benchmark (on demand: pytest -m bench -s tests/test_bench_decode.py): the consumer's work per
event outside Kafka, on BPIC 2012 messages as `backlight replay` publishes them (262,200
events, batches of 5,000 as the consumer polls them): decode on the general path (``json.loads``
and validation in Python, what every message took before) and on the typed fast path, side by
side in one run; then the store write into SQLite. Target: the fast path at most half the
general path's time per event (fails above 0.75: the machine is shared)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import shared_file

from ingest.logfiles import read_log
from ingest.publish import encode
from schemas.decode import SourceSpec, decode, decode_general
from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import SQLiteStore

pytestmark = [pytest.mark.bench, pytest.mark.shared_data]
BATCH, ROUNDS = 5_000, 3
TARGET_RATIO, RATIO_MARGIN = 0.5, 1.5


def per_event_us(run: Callable[[list[bytes]], list[CaseEvent]], messages: list[bytes]) -> float:
    """Microseconds per message of the best of ``ROUNDS`` passes over all batches."""
    best = float("inf")
    for _ in range(ROUNDS):
        gc.collect()
        started = time.perf_counter()
        for at in range(0, len(messages), BATCH):
            run(messages[at:at + BATCH])
        best = min(best, time.perf_counter() - started)
    return best / len(messages) * 1e6


def test_decode_fast_path_against_the_general_path(tmp_path: Path) -> None:
    """Prints decode microseconds per event on both paths and the store write beside them;
    both paths give the same events."""
    events = list(read_log(shared_file("logs/bpic2012.xes.gz"), "onboarding"))
    messages = [encode(e) for e in events]
    spec = SourceSpec("bench", "onboarding")
    fast = [decode(m, [], spec) for m in messages]
    assert fast == [decode_general(m, spec, None) for m in messages] == events

    general_us = per_event_us(lambda batch: [decode_general(m, spec, None) for m in batch], messages)
    fast_us = per_event_us(lambda batch: [decode(m, [], spec) for m in batch], messages)
    origins = [Coordinates("bench", 0, n) for n in range(len(events))]
    store = SQLiteStore(tmp_path / "bench.db")
    started = time.perf_counter()
    for at in range(0, len(events), BATCH):
        assert all(store.write(fast[at:at + BATCH], origins[at:at + BATCH]))
    store_us = (time.perf_counter() - started) / len(events) * 1e6
    store.close()

    ratio = fast_us / general_us
    print(f"\nBPIC 2012, {len(messages)} messages, batches of {BATCH} (best of {ROUNDS})")
    print(f"decode, general path (json.loads + validation): {general_us:.2f} us/event")
    print(f"decode, typed fast path:                        {fast_us:.2f} us/event "
          f"-> ratio {ratio:.2f} (target <= {TARGET_RATIO}, fails above "
          f"{TARGET_RATIO * RATIO_MARGIN:.2f})")
    print(f"store write, SQLite synchronous=FULL (one pass): {store_us:.2f} us/event")
    print(f"decode + store: {fast_us + store_us:.2f} us/event "
          f"({1e6 / (fast_us + store_us):,.0f} events/s on one thread)")
    assert ratio <= TARGET_RATIO * RATIO_MARGIN
