"""Benchmark (run on demand: pytest -m bench -s tests/test_bench_store.py): what durability costs.

BPIC 2012 (262,200 events) written in 5,000-event batches, one transaction each, as the
consumer writes them: SQLite in WAL mode with synchronous=NORMAL (a commit may be lost on
power failure) and FULL (the store's setting: fsync at each commit), and PostgreSQL with
synchronous_commit on (the store's setting) and off (for comparison only). Prints events/s
and the median batch time side by side, and the whole process read back from each; then the
same with 100-event batches (the first 20,000 events), where the per-commit flush weighs more.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from conftest import shared_file
from pg import fresh_database

from ingest.logfiles import read_log
from ingest.postgres import PostgresStore
from ingest.store import EventStore, SQLiteStore
from schemas.event import CaseEvent

pytestmark = pytest.mark.bench
BATCH, SMALL_BATCH, SMALL_EVENTS = 5_000, 100, 20_000


def timed_writes(store: EventStore, events: Sequence[CaseEvent], size: int) -> tuple[float, float]:
    """(events per second over all batches, median seconds per batch)."""
    times = []
    for at in range(0, len(events), size):
        batch = events[at:at + size]
        start = time.perf_counter()
        assert all(store.write(batch))
        times.append(time.perf_counter() - start)
    return len(events) / sum(times), statistics.median(times)


def test_durable_commits_cost(tmp_path: Path, postgres_url: str) -> None:
    """Prints BPIC 2012 write rates: SQLite NORMAL vs FULL, PostgreSQL synchronous_commit on
    vs off; every event is stored once by each."""
    events = list(read_log(shared_file("logs/bpic2012.xes.gz"), "bpic2012"))
    runs: dict[str, Callable[[str], EventStore]] = {
        "SQLite WAL synchronous=NORMAL": lambda tag: SQLiteStore(tmp_path / f"normal{tag}.db",
                                                                 synchronous="NORMAL"),
        "SQLite WAL synchronous=FULL (store)": lambda tag: SQLiteStore(tmp_path / f"full{tag}.db"),
        "PostgreSQL synchronous_commit=on (store)": lambda _: PostgresStore(
            fresh_database(postgres_url)),
        "PostgreSQL synchronous_commit=off": lambda _: PostgresStore(
            fresh_database(postgres_url), durable=False),
    }
    print(f"\n{len(events):,} events of BPIC 2012 in {BATCH:,}-event batches")
    print(f"{'store':42} {'events/s':>10} {'median batch':>13} {'read all':>9}")
    for name, opened in runs.items():
        store = opened("big")
        rate, median = timed_writes(store, events, BATCH)
        start = time.perf_counter()
        frame = store.events("bpic2012")
        read = time.perf_counter() - start
        assert frame.height == frame["event_id"].n_unique() == len(events)
        print(f"{name:42} {rate:>10,.0f} {median * 1000:>10.1f} ms {read:>7.2f} s")
        store.close()
    print(f"\nthe first {SMALL_EVENTS:,} events in {SMALL_BATCH}-event batches")
    for name, opened in runs.items():
        store = opened("small")
        rate, median = timed_writes(store, events[:SMALL_EVENTS], SMALL_BATCH)
        assert [c.events for c in store.counts()] == [SMALL_EVENTS]
        print(f"{name:42} {rate:>10,.0f} {median * 1000:>10.2f} ms")
        store.close()
