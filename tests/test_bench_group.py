"""Benchmark (on demand: pytest -m bench -s tests/test_bench_group.py): scale-out, issue 8.

In one run:

1. Ingest. `backlight simulate` publishes a backlog of 1,000,000 onboarding events, keyed by
   case id, to one 6-partition topic. Then, each in a fresh consumer group with a fresh store
   reading that topic from the beginning: 1 `backlight consume` on SQLite, and 1, 2 and 3 on
   one PostgreSQL database. Printed per configuration: the time from starting the processes
   until the whole backlog is stored (the catch-up time of a 1M-event backlog), events/s over
   that time and from the first stored event on, each consumer's peak RSS (VmHWM, read just
   before SIGTERM), how many events each stored, the share of its time spent in the store's
   write (from its /metrics), and the lock waits on PostgreSQL: how many sessions of the
   store's database wait for a lock, on average, by kind (sampled from ``pg_locks`` every
   20 ms): ``advisory``, the allocation lock a write holds while it takes its xid and seqs
   (the only store-wide lock), and ``transactionid``, a write waiting for another's
   transaction (overlapping event ids: none here, each partition has one consumer).
   Then the ratios of PostgreSQL with 2 and 3 consumers to 1.
2. Store writes alone. 1, 2 and 3 processes write 300,000 simulated events at once (disjoint
   shares, 5,000-event batches) straight into a fresh PostgreSQL store: with the store's
   parallel writes, and with the lock of before held across each write, alternating in the
   same run; events/s, the ratios 2/1 and 3/1 of each, and the lock waits.
3. Mine. 1,000,000 and then 5,000,000 simulated onboarding events written straight into a
   SQLite store and a PostgreSQL database through the store API; `backlight mine --format
   json` run as a subprocess on each: wall time, peak RSS of the process, and (in this
   process) the time `store.events` alone takes to read them.

Targets (failing only on a wide miss, the machine is shared and timings are noisy):
- No store-wide lock wait: writes run in parallel (no lock held across a write's insert or
  commit; storage/pg_events.py), so sessions waiting for the allocation lock stay under 0.05 on
  average (fail above 0.5; with the lock of before, 2 and 3 consumers had 0.5 and 1.2 waiting).
- PostgreSQL consumers scale as far as the cores let them: 3 consumers at least 1.5x one
  where the database has cores of its own. On the shared 2-core machine, broker, PostgreSQL
  and consumers are CPU-bound already with one consumer (0.99x and 1.08x measured for 3 in
  two runs, 1.03x with the lock of before), so only a wide miss fails: 3 below 0.8x one.
- Parallel store writes by 3 processes no slower than one at a time (fail below 0.8x).
- One PostgreSQL consumer within 2x of one SQLite consumer (fail below 0.25x).
- A consumer's peak RSS does not grow with the backlog: under 1 GiB (fail above 2 GiB).
- `mine` from PostgreSQL within 1.5x of the same from SQLite (fail above 3x), and its peak RSS
  under 256 MiB + 2.5 KiB per stored event (fail above 512 MiB + 5 KiB per event).

BACKLIGHT_BENCH_SCALE multiplies every size (0.02 checks the benchmark itself in minutes; below
1 the speed targets are not checked, start-up and rebalances would outweigh the work);
BACKLIGHT_BENCH_NO_5M=1 leaves out the 5,000,000-event mine (it takes long and several GB).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bench_support import (
    EVENTS_PER_CASE,
    PEAK_RSS,
    event_chunks,
    peak_rss_kib,
    scale,
    scaled,
    store_config,
    wait_until,
)
from conftest import ROOT, backlight, popen_backlight
from consume_support import Running
from consume_support import total as total_of
from pg import fresh_database

from ingest.consumer import dead_letter_topic
from ingest.transport import ensure_topics
from schemas.event import CaseEvent
from storage import EventStore, open_store
from storage.pg_events import _WRITE_LOCK, PostgresStore

pytestmark = pytest.mark.bench
PARTITIONS, PROCESS = 6, "onboarding"
BACKLOG, MINE_SIZES = 1_000_000, (1_000_000, 5_000_000)
WRITE_BATCH = 50_000
MINE_START = datetime(2000, 1, 3, 9, 0)  # each chunk: 20,000 cases, about 25 months
BACKLOG_START = "2000-01-03"
"""The backlog's first case: about 800 cases arrive a month, so 1M events (133,000 cases) end
some 14 years later, before now (the consumer dead-letters times more than a day ahead)."""
GIB = 1024 * 1024  # KiB
DEADLINE_S = 3600  # only proves that nothing hangs


@dataclass(frozen=True)
class Ingest:
    label: str
    consumers: int
    wall_s: float  # from starting the processes until everything was stored
    stored_s: float  # from the first stored event until everything was stored
    peaks_kib: list[int]
    stored: list[int]  # events each consumer stored, as it reported at exit
    write_s: list[float]  # each consumer's seconds in store writes (lock wait and commit included)
    lock_waiters: dict[str, float] | None  # PostgreSQL: sessions waiting for a lock, by kind


def publish_backlog(bootstrap: str, topic: str, tmp_path: Path, events: int) -> tuple[int, float]:
    """`backlight simulate` on the topic: (events published, seconds taken)."""
    cfg = store_config(tmp_path / "simulate.toml", bootstrap, f"sqlite:///{tmp_path}/unused.db",
                       topic, PROCESS, "simulate")
    started = time.monotonic()
    proc = backlight("--log-level", "WARNING", "simulate", "--config", str(cfg), "--process",
                     PROCESS, "--cases", str(round(events / EVENTS_PER_CASE)), "--seed", "8",
                     "--start", BACKLOG_START, timeout=DEADLINE_S)
    found = re.search(r"published (\d+) events", proc.stdout)
    assert found, proc.stdout
    return int(found.group(1)), time.monotonic() - started


def alive(running: list[Running]) -> None:
    """Fail with its output if a consumer has exited on its own."""
    for r in running:
        if r.proc.poll() is not None:
            raise AssertionError(f"a consumer exited {r.proc.returncode}:\n"
                                 + "".join(r.lines[-40:]))


class LockWaiters:
    """Samples, on a thread of its own every ``every_s``, how many sessions of the store's
    database wait for a lock, by kind (``pg_locks.locktype``); nothing on SQLite."""

    def __init__(self, url: str, every_s: float = 0.02) -> None:
        self.conn = psycopg.connect(url, autocommit=True) if url.startswith("postgresql") else None
        self.every_s = every_s
        self.samples = 0
        self.waiting: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if self.conn is not None:
            self._thread.start()

    def _run(self) -> None:
        assert self.conn is not None
        while not self._stop.wait(self.every_s):
            rows = self.conn.execute(
                "SELECT l.locktype, count(*) FROM pg_locks l JOIN pg_stat_activity a"
                " USING (pid) WHERE NOT l.granted AND a.datname = current_database()"
                " GROUP BY l.locktype").fetchall()
            self.waiting.update({str(kind): int(n) for kind, n in rows})
            self.samples += 1

    def restart(self) -> None:
        """Forget the samples so far (count from now)."""
        self.waiting.clear()
        self.samples = 0

    def mean(self) -> dict[str, float] | None:
        """Sessions waiting, on average, per kind of lock (None on SQLite)."""
        if self.conn is None:
            return None
        return {kind: self.waiting[kind] / max(1, self.samples)
                for kind in ("advisory", "transactionid", *sorted(self.waiting))}

    def close(self) -> None:
        self._stop.set()
        if self.conn is not None:
            self._thread.join(5)
            self.conn.close()


def run_group(label: str, url: str, consumers: int, bootstrap: str, topic: str, total: int,
              tmp_path: Path) -> Ingest:
    """Start ``consumers`` `backlight consume` processes in a fresh group on a fresh store;
    measure until the store holds all ``total`` events; stop them with SIGTERM."""
    store = open_store(url)  # the schema is there before the consumers start (no race)
    waiters = LockWaiters(url)
    tag = f"{label.split()[0].lower()}-{consumers}-{time.monotonic_ns()}"
    cfg = store_config(tmp_path / f"{tag}.toml", bootstrap, url, topic, PROCESS, f"g-{tag}")
    try:
        with contextlib.ExitStack() as stack:
            started = time.monotonic()
            procs = [stack.enter_context(popen_backlight(
                "--log-level", "WARNING", "consume", "--config", str(cfg), "--metrics-port", "0"))
                for _ in range(consumers)]
            running = [Running(p) for p in procs]

            def stored(at_least: int) -> bool:
                alive(running)
                return store.last_seq() >= at_least

            first = wait_until("a first event stored", lambda: stored(1), DEADLINE_S, 0.2)
            waiters.restart()  # from the first stored event on
            done = wait_until(f"{total} events stored", lambda: stored(total), DEADLINE_S)
            peaks = [peak_rss_kib(p.pid) for p in procs]
            write_s = [total_of(r.scrape(), "backlight_store_write_seconds_sum") for r in running]
            for p in procs:
                p.send_signal(signal.SIGTERM)
            outputs = [p.communicate(timeout=120) for p in procs]
        for r, (out, _) in zip(running, outputs, strict=True):
            assert r.proc.returncode == 0, f"{label}: exited {r.proc.returncode}\n{out}\n" + \
                "".join(r.lines[-40:])
        reported = [re.search(r"(\d+) stored, (\d+) already stored", out) for out, _ in outputs]
        assert all(reported), outputs
        each = [int(r.group(1)) for r in reported if r]
        counts = {c.process: c.events for c in store.counts()}
        assert counts == {PROCESS: total} and sum(each) == total, (counts, each)
        assert sum(int(r.group(2)) for r in reported if r) == 0  # no batch stored twice
        return Ingest(label, consumers, done - started, done - first, peaks, each, write_s,
                      waiters.mean())
    finally:
        waiters.close()
        store.close()


@pytest.mark.kafka
def test_consumer_group_ingest_sqlite_and_postgresql(kafka_bootstrap: str, postgres_url: str,
                                                     tmp_path: Path, unique: str) -> None:
    """Prints catch-up time, events/s and each consumer's peak memory for a 1M-event backlog
    on a 6-partition topic: 1 consumer on SQLite, 1, 2 and 3 on PostgreSQL; each stores the
    whole backlog once."""
    topic = f"bench.group.{unique}"
    ensure_topics(kafka_bootstrap, [topic, dead_letter_topic(topic)], partitions=PARTITIONS)
    total, publish_s = publish_backlog(kafka_bootstrap, topic, tmp_path, scaled(BACKLOG))
    runs = [("SQLite", f"sqlite:///{tmp_path}/ingest.db", 1)] + [
        ("PostgreSQL", fresh_database(postgres_url), n) for n in (1, 2, 3)]
    results = [run_group(label, url, n, kafka_bootstrap, topic, total, tmp_path)
               for label, url, n in runs]

    print(f"\nbacklog: {total:,} onboarding events on one {PARTITIONS}-partition topic, published "
          f"by `backlight simulate` in {publish_s:.0f} s ({total / publish_s:,.0f} ev/s)")
    print("shared, loaded 2-core machine (broker, PostgreSQL, consumers and other users' jobs "
          "on the same cores): timings are noisy")
    print(f"{'store':11} {'consumers':>9} {'catch-up':>9} {'ev/s':>8} {'ev/s*':>8}  "
          f"{'peak RSS (MiB)':15} {'stored':27} {'in store write':16} lock waiters")
    for r in results:
        peaks = ", ".join(f"{k / 1024:.0f}" for k in r.peaks_kib)
        shares = ", ".join(f"{w / r.stored_s:.0%}" for w in r.write_s)
        lock = "-" if r.lock_waiters is None else ", ".join(
            f"{kind} {n:.3f}" for kind, n in r.lock_waiters.items())
        print(f"{r.label:11} {r.consumers:>9} {r.wall_s:>7.1f} s {total / r.wall_s:>8,.0f} "
              f"{total / r.stored_s:>8,.0f}  {peaks:15} {', '.join(f'{n:,}' for n in r.stored):27} "
              f"{shares:16} {lock}")
    sqlite, pg1, pg2, pg3 = (total / r.wall_s for r in results)
    star = [total / r.stored_s for r in results[1:]]
    print(f"PostgreSQL 2/1 consumers: {pg2 / pg1:.2f}x, 3/1: {pg3 / pg1:.2f}x (ev/s*: "
          f"{star[1] / star[0]:.2f}x, {star[2] / star[0]:.2f}x); 1 PostgreSQL / 1 SQLite: "
          f"{pg1 / sqlite:.2f}x")
    print("catch-up and ev/s: from starting the processes; ev/s*: from the first stored event;\n"
          "peak RSS and events stored per consumer; in store write: each consumer's share of the\n"
          "time from the first stored event in the store's write (the commit included); lock\n"
          "waiters: sessions of the store's database waiting for a lock, on average over that\n"
          "time, by kind (advisory: the allocation lock; sampled from pg_locks every 20 ms)")
    print(json.dumps({"events": total, "catch_up_s": {f"{r.label}x{r.consumers}": round(r.wall_s, 1)
                                                      for r in results},
                      "ratios": {"pg2/pg1": round(pg2 / pg1, 2), "pg3/pg1": round(pg3 / pg1, 2)},
                      "lock_waiters": {f"{r.label}x{r.consumers}": r.lock_waiters
                                       for r in results[1:]},
                      "peak_rss_mib": {f"{r.label}x{r.consumers}": [round(k / 1024) for k in
                                                                     r.peaks_kib]
                                       for r in results}}))
    allocation = max((r.lock_waiters or {}).get("advisory", 0.0) for r in results)
    if full_scale():
        assert pg3 >= 0.8 * pg1, "3 PostgreSQL consumers far slower than 1"
        assert pg1 >= 0.25 * sqlite, "PostgreSQL far slower than SQLite"
    assert allocation <= 0.5, "writes wait for a store-wide lock"
    assert max(k for r in results for k in r.peaks_kib) < 2 * GIB, "a consumer above 2 GiB"


def full_scale() -> bool:
    """Whether the speed targets are checked: at reduced scale, start-up and the group's
    rebalances outweigh the work, and the figures only show that the benchmark runs."""
    if scale() < 1:
        print("reduced scale (BACKLIGHT_BENCH_SCALE < 1): speed targets not checked")
    return scale() >= 1


# -- the store's writes alone: in parallel against one at a time -------------------------

STORE_WRITES, STORE_BATCH = 300_000, 5_000


class OneAtATime(PostgresStore):
    """The store's writes as before issue 15: a transaction-level advisory lock held from the
    transaction's first statement to its commit (taken here before the reservation)."""

    def _reserve(self, conn: psycopg.Connection[Any], n: int) -> int:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
        return super()._reserve(conn, n)


def _writer(url: str, serial: bool, events: list[CaseEvent], ready: Any) -> None:
    """One writer process: open the store, wait for the others, write its share in batches."""
    store = (OneAtATime if serial else PostgresStore)(url)
    ready.wait()
    for at in range(0, len(events), STORE_BATCH):
        assert all(store.write(events[at:at + STORE_BATCH]))
    store.close()


def timed_writers(url: str, writers: int, serial: bool,
                  events: list[CaseEvent]) -> tuple[float, dict[str, float] | None]:
    """``writers`` processes writing disjoint shares of ``events`` at once into a fresh
    store: the seconds from their start until the last one is done, and the lock waits."""
    PostgresStore(url).close()  # the schema
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(writers + 1)
    share = -(-len(events) // writers)
    procs = [ctx.Process(target=_writer, args=(url, serial, events[w * share:(w + 1) * share],
                                                 ready)) for w in range(writers)]
    for p in procs:
        p.start()
    waiters = LockWaiters(url)
    try:
        ready.wait(DEADLINE_S)
        started = time.monotonic()
        waiters.restart()
        for p in procs:
            p.join(DEADLINE_S)
        took = time.monotonic() - started
        assert [p.exitcode for p in procs] == [0] * writers
        return took, waiters.mean()
    finally:
        waiters.close()


def test_store_writes_in_parallel_against_one_at_a_time(postgres_url: str) -> None:
    """Prints events/s of 1, 2 and 3 processes writing 300,000 events (5,000-event batches,
    disjoint shares) straight into a fresh PostgreSQL store, with the store's parallel writes
    and with the lock of before held across each write, alternating in one run; and the lock
    waits. Without Kafka and decoding, this is what the store itself lets writers do."""
    events = [e for chunk in event_chunks(PROCESS, scaled(STORE_WRITES)) for e in chunk]
    plan = [(1, True), (1, False), (2, False), (2, True), (3, True), (3, False)]
    rates: dict[tuple[int, bool], float] = {}
    print(f"\n{len(events):,} events written through PostgresStore in {STORE_BATCH:,}-event "
          "batches by 1-3 processes at once (disjoint shares), one fresh database each")
    print(f"{'writers':>7} {'writes':17} {'seconds':>8} {'ev/s':>8}  lock waiters")
    for writers, serial in plan:
        took, waits = timed_writers(fresh_database(postgres_url), writers, serial, events)
        rates[writers, serial] = len(events) / took
        shown = ", ".join(f"{k} {n:.3f}" for k, n in (waits or {}).items())
        print(f"{writers:>7} {'one at a time' if serial else 'in parallel':17} {took:>8.1f} "
              f"{len(events) / took:>8,.0f}  {shown}")
    for serial in (False, True):
        one = rates[1, serial]
        print(f"{'one at a time' if serial else 'in parallel':17} 2/1: "
              f"{rates[2, serial] / one:.2f}x, 3/1: {rates[3, serial] / one:.2f}x")
    print(json.dumps({f"{w}x{'serial' if s else 'parallel'}": round(r) for (w, s), r in
                      rates.items()}))
    if full_scale():
        assert rates[3, False] >= 0.8 * rates[3, True], "parallel writes slower than serial"


# -- mine on millions of stored events -----------------------------------------------------

@dataclass(frozen=True)
class Mined:
    label: str
    events: int
    read_s: float  # store.events alone, in this process
    mine_s: float  # the whole `backlight mine --format json` process
    peak_kib: int
    doc: dict[str, object]


def write_all(stores: dict[str, EventStore], events: list[CaseEvent],
              seconds: dict[str, float]) -> None:
    for name, store in stores.items():
        started = time.perf_counter()
        for at in range(0, len(events), WRITE_BATCH):
            assert all(store.write(events[at:at + WRITE_BATCH]))
        seconds[name] += time.perf_counter() - started


def fill(stores: dict[str, EventStore], chunks: Iterator[list[CaseEvent]],
         pending: list[CaseEvent], have: int, want: int,
         seconds: dict[str, float]) -> tuple[list[CaseEvent], int]:
    """Write events from ``pending`` and then ``chunks`` until the stores hold ``want``;
    return what is left of the last chunk, and how many they hold."""
    while have < want:
        chunk = pending or next(chunks)
        take, pending = chunk[:want - have], chunk[want - have:]
        write_all(stores, take, seconds)
        have += len(take)
    return pending, have


def mine_once(label: str, url: str, events: int, tmp_path: Path) -> Mined:
    """`backlight mine --format json` on the store in a subprocess: its wall time and peak
    RSS; and, in this process, how long the store takes to hand the events over."""
    store = open_store(url)
    started = time.perf_counter()
    assert store.events(PROCESS).height == events
    read_s = time.perf_counter() - started
    store.close()
    cfg = store_config(tmp_path / f"mine-{label}.toml", "127.0.0.1:9", url, "t", PROCESS, "g")
    out = tmp_path / f"mine-{label}-{events}.json"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, "--log-level", "WARNING", "mine",
                           "--config", str(cfg), "--process", PROCESS, "--format", "json",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=DEADLINE_S, check=False)
    mine_s = time.perf_counter() - started
    assert proc.returncode == 0 and out.exists(), f"{label}: {proc.stdout}\n{proc.stderr[-3000:]}"
    peak = int(proc.stderr.strip().splitlines()[-1].split()[-1])
    doc = json.loads(out.read_text())
    out.unlink()
    assert doc["events"] == events, (label, doc["events"])
    return Mined(label, events, read_s, mine_s, peak, doc)


def test_mine_millions_from_postgresql_vs_sqlite(postgres_url: str, tmp_path: Path) -> None:
    """Prints `mine --format json` seconds and peak memory on 1M and 5M stored events,
    PostgreSQL beside SQLite; both stores give the same document."""
    sizes = [scaled(n) for n in MINE_SIZES[:1 if os.environ.get("BACKLIGHT_BENCH_NO_5M") else 2]]
    urls = {"SQLite": f"sqlite:///{tmp_path}/mine.db", "PostgreSQL": fresh_database(postgres_url)}
    stores = {name: open_store(url) for name, url in urls.items()}
    chunks = event_chunks(PROCESS, sizes[-1], start=MINE_START)  # all before now: all mined
    pending: list[CaseEvent] = []
    have, write_s = 0, dict.fromkeys(urls, 0.0)
    results: list[Mined] = []
    try:
        for size in sizes:
            pending, have = fill(stores, chunks, pending, have, size, write_s)
            results += [mine_once(name, url, size, tmp_path) for name, url in urls.items()]
    finally:
        for store in stores.values():
            store.close()

    print(f"\n`backlight mine --format json` on simulated {PROCESS} events (written through "
          f"the store API in {WRITE_BATCH:,}-event batches: SQLite {have / write_s['SQLite']:,.0f} "
          f"ev/s, PostgreSQL {have / write_s['PostgreSQL']:,.0f} ev/s)")
    print("shared, loaded 2-core machine: timings are noisy")
    print(f"{'store':11} {'events':>10} {'mine':>8} {'vs SQLite':>9} {'peak RSS':>10} "
          f"{'per event':>10} {'store.events':>12}")
    by = {(r.label, r.events): r for r in results}
    for r in results:
        ratio = r.mine_s / by["SQLite", r.events].mine_s
        print(f"{r.label:11} {r.events:>10,} {r.mine_s:>6.1f} s {ratio:>8.2f}x "
              f"{r.peak_kib / 1024:>6,.0f} MiB {r.peak_kib * 1024 / r.events:>8,.0f} B "
              f"{r.read_s:>10.1f} s")
    print(json.dumps({f"{r.label}@{r.events}": {"mine_s": round(r.mine_s, 1),
                                                "peak_rss_mib": round(r.peak_kib / 1024),
                                                "read_s": round(r.read_s, 1)} for r in results}))
    check_speed = full_scale()
    for size in sizes:
        sqlite, pg = by["SQLite", size], by["PostgreSQL", size]
        assert pg.doc == sqlite.doc, f"{size}: the stores gave different documents"
        if check_speed:
            assert pg.mine_s <= 3 * sqlite.mine_s, f"{size}: mine from PostgreSQL > 3x SQLite"
        assert max(pg.peak_kib, sqlite.peak_kib) <= 512 * 1024 + 5 * size, \
            f"{size}: mine above 512 MiB + 5 KiB per event"
