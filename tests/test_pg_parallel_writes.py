"""PostgreSQL writes in parallel (issue 15, item 4), on a real server: a write does not wait for
another writer's open transaction, and a follower reading by seq still never sees a later seq
before an earlier one that is in flight, nor misses one, also on a store from the previous
schema version."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from pg import fresh_database
from subscribers_support import Recorder

from ingest.dispatcher import Dispatcher
from ingest.subscribers import Subscription
from schemas.event import CaseEvent, to_time_us
from storage import StoredEvent
from storage.migrations import EVENTS_POSTGRES, POSTGRES, migrate_postgres, postgres_version
from storage.pg_events import PostgresStore, connect_postgres

T0 = to_time_us(datetime(2026, 3, 4, 8, 15, tzinfo=UTC))
WAIT_S = 30.0


def ev(i: int) -> CaseEvent:
    return CaseEvent(f"e{i:05d}", "claims", f"c{i % 7}", f"Step {i % 5}", T0 + i * 1_000_000,
                     "complete", "u-1", "back-office/claims", None)


class Paused(PostgresStore):
    """A store whose writes call ``pause`` inside their transaction, after the insert and
    before the commit (a writer slowed down or stopped while its seqs are in flight)."""

    def __init__(self, url: str, pause: Callable[[], None]) -> None:
        super().__init__(url)
        self._pause = pause

    def _insert(self, conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]],  # type: ignore[override]
                first: int) -> set[str]:
        inserted = PostgresStore._insert(conn, rows, first)
        self._pause()
        return inserted


class Held:
    """A write left open: it runs on its own thread and waits, after its insert, until
    ``release``."""

    def __init__(self, url: str, events: list[CaseEvent]) -> None:
        self.inside, self.released = threading.Event(), threading.Event()
        self.store = Paused(url, self._wait)
        self.result: list[bool] | BaseException | None = None
        self.thread = threading.Thread(target=self._write, args=(events,))
        self.thread.start()
        assert self.inside.wait(WAIT_S), "the held write never reached its insert"

    def _wait(self) -> None:
        self.inside.set()
        assert self.released.wait(WAIT_S)

    def _write(self, events: list[CaseEvent]) -> None:
        try:
            self.result = self.store.write(events)
        except BaseException as exc:
            self.result = exc

    def release(self) -> list[bool] | BaseException | None:
        self.released.set()
        self.thread.join(WAIT_S)
        self.store.close()
        return self.result


@pytest.fixture()
def url(postgres_url: str) -> str:
    """A fresh database with the store's schema."""
    url = fresh_database(postgres_url)
    PostgresStore(url).close()
    return url


@pytest.fixture()
def store(url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(url)
    yield opened
    opened.close()


def ids(rows: list[StoredEvent]) -> list[str]:
    return [e.event_id for _, e, _ in rows]


def test_a_write_is_not_blocked_by_another_writers_open_transaction(
        url: str, store: PostgresStore) -> None:
    """While one writer's transaction stays open after its insert, another store's write of
    other events commits within seconds (no store-wide lock held across the insert)."""
    held = Held(url, [ev(i) for i in range(100)])
    try:
        started = time.monotonic()
        assert store.write([ev(i) for i in range(100, 200)]) == [True] * 100
        took = time.monotonic() - started
        assert held.thread.is_alive() and not held.released.is_set()
    finally:
        assert held.release() == [True] * 100
    assert took < 2.0, f"the write waited {took:.1f} s for the open transaction"


def test_a_follower_never_sees_a_later_seq_before_an_earlier_one_in_flight(
        url: str, store: PostgresStore) -> None:
    """With a write in flight holding lower seqs than a later batch already committed,
    since, last_seq and changed_since show neither until the earlier write commits; then
    since returns both, the earlier first, in increasing seq."""
    store.write([ev(i) for i in range(5)])
    mark = store.last_seq()
    held = Held(url, [ev(i) for i in range(10, 20)])
    try:
        assert store.write([ev(i) for i in range(20, 30)]) == [True] * 10
        assert store.since(mark, 100) == []
        assert store.last_seq() == mark and store.changed_since(mark) == {}
    finally:
        assert held.release() == [True] * 10
    rows = store.since(mark, 100)
    assert ids(rows) == [f"e{i:05d}" for i in (*range(10, 20), *range(20, 30))]
    seqs = [s for s, _, _ in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20 and store.last_seq() == seqs[-1]
    assert store.changed_since(mark) == {"claims": seqs[-1]}


def batches(writer: int) -> list[list[CaseEvent]]:
    """Ten batches of 60 events every writer writes (half of the writers in reverse order)
    and 20 of the writer's own each."""
    plan = [[ev(i) for i in range(j, j + 60)] + [ev(1000 * (writer + 1) + j + k)
                                                  for k in range(20)]
            for j in range(0, 600, 60)]
    return plan if writer % 2 else plan[::-1]


def test_concurrent_writers_and_a_follower_see_every_event_once_in_seq_order(url: str) -> None:
    """Four writers store overlapping and disjoint batches at once, each pausing at random
    inside its transaction (commits out of seq order), while a follower pages with since:
    it sees every stored event exactly once, in increasing seq; no write fails (no deadlock);
    and ordered by seq, the rows' transaction ids never go down (xid order is seq order)."""
    plans = [batches(w) for w in range(4)]
    errors: list[BaseException] = []
    writing = threading.Barrier(len(plans) + 1)

    def writer(batches: list[list[CaseEvent]], seed: int) -> None:
        rnd = random.Random(seed)
        store = Paused(url, lambda: time.sleep(rnd.random() * 0.03))
        try:
            writing.wait()
            for batch in batches:
                store.write(batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(p, n)) for n, p in enumerate(plans)]
    for t in threads:
        t.start()
    follower = PostgresStore(url)
    seen: list[StoredEvent] = []
    writing.wait()
    while True:
        done = not any(t.is_alive() for t in threads)
        page = follower.since(seen[-1][0] if seen else 0, 97)
        seen += page
        if done and not page:
            break
    for t in threads:
        t.join(WAIT_S)
    assert errors == []
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT seq, tx::text::bigint FROM events ORDER BY seq").fetchall()
    assert [s for s, _, _ in seen] == [s for s, _ in stored]
    assert sorted(ids(seen)) == sorted({e.event_id for p in plans for b in p for e in b})
    assert [tx for _, tx in stored] == sorted(tx for _, tx in stored)
    follower.close()


def test_a_store_from_the_previous_schema_version_is_followed(postgres_url: str) -> None:
    """A store written at schema version 1 (rows without a writing transaction) is upgraded
    in place when opened: followers read its old rows, then the new ones after them."""
    url = fresh_database(postgres_url)
    conn = connect_postgres(url)
    migrate_postgres(conn, url, replace(EVENTS_POSTGRES, steps=POSTGRES[:1]))
    conn.execute("INSERT INTO events (event_id, process, case_id, activity, time_us, lifecycle)"
                 " SELECT 'old' || n, 'claims', 'c1', 'A', n, 'complete'"
                 " FROM generate_series(1, 50) AS n")
    assert postgres_version(conn) == 1
    store = PostgresStore(url)
    try:
        assert postgres_version(conn) == POSTGRES[-1].version == 2
        nulls = conn.execute("SELECT count(*) FROM events WHERE tx IS NULL").fetchone()
        assert nulls == (50,)
        assert store.last_seq() == 50 and store.changed_since(0) == {"claims": 50}
        assert ids(store.since(0, 100)) == [f"old{n}" for n in range(1, 51)]
        assert store.write([ev(i) for i in range(10)]) == [True] * 10
        rows = store.since(40, 100)
        assert ids(rows) == [f"old{n}" for n in range(41, 51)] + [f"e{i:05d}" for i in range(10)]
        assert [s for s, _, _ in rows] == list(range(41, 61)) and store.last_seq() == 60
    finally:
        store.close()
        conn.close()


def test_a_commit_not_visible_yet_is_not_taken_for_another_writers_events(
        url: str, store: PostgresStore) -> None:
    """A consumer's commit of 5 events, made while an earlier write is in flight, and its
    notify seeing the store's head grow by 5 with another writer's events: the subscriber is
    not handed its events as those seqs; once the earlier write commits, it gets every
    event once, in seq order."""
    rec = Recorder()
    dispatcher = Dispatcher(store, [Subscription("rec", rec, batch_limit=7)])
    dispatcher.start()
    try:
        first = Held(url, [ev(i) for i in range(5)])
        between = Held(url, [ev(i) for i in range(5, 8)])
        ours = [ev(i) for i in range(8, 13)]
        assert store.write(ours) == [True] * 5
        assert first.release() == [True] * 5
        assert store.last_seq() == 5  # the head grew by 5: the first write's events
        dispatcher.notify(events=ours)
        assert between.release() == [True] * 3
        dispatcher.notify()
        assert dispatcher.drain(stall_timeout_s=WAIT_S)
    finally:
        assert dispatcher.stop(5.0)
    assert rec.ids == [f"e{i:05d}" for i in range(13)]
