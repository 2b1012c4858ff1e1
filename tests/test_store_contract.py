"""The EventStore contract, the same tests on both backends: SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import polars as pl
import pytest
from pg import fresh_database
from store_support import execute

from ingest.errors import StoreError
from ingest.simulate import Anomalies, StuckCases, simulate
from schemas.event import CaseEvent, to_time_us
from schemas.frame import FRAME_SCHEMA, Coordinates
from storage import EventStore, inspect_store, open_store

T0 = to_time_us(datetime(2026, 3, 4, 8, 15, tzinfo=UTC))


def ev(i: int, process: str = "claims", case: str = "c1", minute: int | None = None) -> CaseEvent:
    return CaseEvent(f"e{i}", process, case, f"Step {i}",
                     T0 + (i if minute is None else minute) * 60_000_000, "complete", "u-1",
                     "back-office/claims", '{"amount":1}')


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, empty store of each backend (a new SQLite file; a new PostgreSQL database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('store') / 's.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture()
def store(url: str) -> Iterator[EventStore]:
    opened = open_store(url)
    yield opened
    opened.close()


def test_write_says_which_events_were_new(store: EventStore) -> None:
    """Writing a batch twice stores it once; write says which events were new, and a repeat
    within one batch is not."""
    batch = [ev(i) for i in range(5)]
    assert store.write(batch, [Coordinates("t", 0, i) for i in range(5)]) == [True] * 5
    assert store.write([*batch[2:], ev(9), ev(9)]) == [False, False, False, True, False]
    assert [(c.process, c.events, c.cases) for c in store.counts()] == [("claims", 6, 1)]
    assert store.write([]) == []


def test_a_batch_larger_than_one_insert_is_decided_per_event(
        store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of 12,345 events (several insert statements), half stored before and with
    repeats across its chunks, gets the right flag for every event and stores each once;
    read back 1,000 rows at a time, the frame has them all, in time order."""
    store.write([ev(i) for i in range(0, 12_345, 2)])
    batch = [ev(i) for i in range(12_345)] + [ev(i) for i in range(1, 3_000, 3)]
    flags = store.write(batch)
    assert flags == [i % 2 == 1 for i in range(12_345)] + [False] * 1_000
    assert [(c.events, c.cases) for c in store.counts()] == [(12_345, 1)]
    for module in ("storage.sqlite_events", "storage.pg_events"):
        monkeypatch.setattr(f"{module}.READ_CHUNK", 1_000)
    frame = store.events("claims")
    assert frame["event_id"].to_list() == [f"e{i}" for i in range(12_345)]


def test_a_failing_batch_stores_nothing(store: EventStore) -> None:
    """An event the store rejects (no activity) in the middle of a long batch fails the whole
    batch with a StoreError; none of its events is stored, and the store goes on working."""
    bad = CaseEvent("bad", "claims", "c1", None, T0, "complete", None, None, None)  # type: ignore[arg-type]
    batch = [ev(i) for i in range(3_000)]
    with pytest.raises(StoreError, match="writing 3001 events"):
        store.write([*batch[:2_500], bad, *batch[2_500:]])
    assert store.counts() == [] and store.last_seq() == 0
    assert store.write(batch[:2]) == [True, True]


def test_frame_has_schema_utc_times_in_time_then_arrival_order(store: EventStore) -> None:
    """events() gives FRAME_SCHEMA columns and exact UTC times, in time order, events at the
    same time in arrival order (seq increasing with arrival)."""
    store.write([ev(3, minute=5), ev(1, minute=5), ev(2, minute=1)])
    store.write([ev(4, minute=5), ev(0, minute=0)])
    frame = store.events("claims")
    assert dict(frame.schema) == FRAME_SCHEMA
    assert frame["event_id"].to_list() == ["e0", "e2", "e3", "e1", "e4"]
    seqs = dict(zip(frame["event_id"], frame["seq"], strict=True))
    assert seqs["e3"] < seqs["e1"] < seqs["e2"] < seqs["e4"] < seqs["e0"]
    assert frame["timestamp"][1] == datetime(2026, 3, 4, 8, 16, tzinfo=UTC)
    assert frame.row(2)[1:8] == ("c1", "Step 3", datetime(2026, 3, 4, 8, 20, tzinfo=UTC),
                                 "complete", "u-1", "back-office/claims", '{"amount":1}')
    assert dict(store.events("nothing").schema) == FRAME_SCHEMA and store.events("nothing").is_empty()


def test_time_window_is_half_open(store: EventStore) -> None:
    """since is inclusive, until exclusive."""
    store.write([ev(i) for i in range(10)])
    frame = store.events("claims", since=datetime(2026, 3, 4, 8, 17, tzinfo=UTC),
                         until=datetime(2026, 3, 4, 8, 20, tzinfo=UTC))
    assert frame["event_id"].to_list() == ["e2", "e3", "e4"]
    assert store.events("claims", since=datetime(2026, 3, 4, 8, 24, tzinfo=UTC)).height == 1
    assert store.events("claims", until=datetime(2026, 3, 4, 8, 16, tzinfo=UTC)).height == 1


def test_latest_and_out_of_range_read_the_time_index(store: EventStore) -> None:
    """latest() is the process's last event time before ``until``; out_of_range() counts its
    events before 1970 or after the given moment, not another process's."""
    store.write([ev(0, minute=0), ev(1, minute=10), ev(2, minute=20),
                 CaseEvent("old", "claims", "c9", "Step", -5_000_000, "complete", None, None, None),
                 ev(3, "payments", minute=-100_000)])
    assert store.latest("claims") == datetime(2026, 3, 4, 8, 35, tzinfo=UTC)
    assert store.latest("claims", until=datetime(2026, 3, 4, 8, 30, tzinfo=UTC)) == datetime(
        2026, 3, 4, 8, 25, tzinfo=UTC)
    assert store.latest("nothing") is None
    assert store.out_of_range("claims", datetime(2026, 3, 4, 8, 26, tzinfo=UTC)) == 2
    assert store.out_of_range("payments", datetime(2026, 3, 4, 8, 26, tzinfo=UTC)) == 0


def test_cases_since_reads_whole_cases_touched_since_a_time(store: EventStore) -> None:
    """cases_since keeps every event (earlier ones too) of the cases with an event at or after
    it, and no event of the others or of another process; until bounds both (a case touched
    only after until is not read)."""
    store.write([ev(0, case="old", minute=0), ev(1, case="old", minute=5),
                 ev(2, case="late", minute=1), ev(3, case="late", minute=30),
                 ev(4, case="new", minute=40), ev(5, "payments", case="late", minute=50)])
    frame = store.events("claims", cases_since=datetime(2026, 3, 4, 8, 40, tzinfo=UTC))
    assert frame["event_id"].to_list() == ["e2", "e3", "e4"]
    assert frame.group_by("case_id").len().sort("case_id").rows() == [("late", 2), ("new", 1)]
    bounded = store.events("claims", until=datetime(2026, 3, 4, 8, 50, tzinfo=UTC),
                           cases_since=datetime(2026, 3, 4, 8, 40, tzinfo=UTC))
    assert bounded["event_id"].to_list() == ["e2", "e3"]
    touched_after_until = store.events("claims", until=datetime(2026, 3, 4, 8, 44, tzinfo=UTC),
                                       cases_since=datetime(2026, 3, 4, 8, 40, tzinfo=UTC))
    assert touched_after_until.is_empty()
    assert store.events("claims", cases_since=datetime(2026, 3, 5, tzinfo=UTC)).is_empty()


def test_counts_are_events_and_distinct_cases_per_process(store: EventStore) -> None:
    """counts() gives each process's events and distinct cases, by process name."""
    store.write([ev(1, "payments", "a"), ev(2, "payments", "a"), ev(3, "payments", "b"),
                 ev(4, "claims", "a")])
    assert [(c.process, c.events, c.cases) for c in store.counts()] == [
        ("claims", 1, 1), ("payments", 3, 2)]


def test_open_cases_are_the_cases_whose_latest_event_is_not_an_end(store: EventStore) -> None:
    """open_cases lists, by case id, the cases whose latest event (by time, then arrival) is
    not an end activity, with that step, its time, the first event's time and the count,
    as computed from the process's whole frame; an end activity named like SQL is a value."""
    ends = {"Close claim", "Reject claim", "x') OR ('1'='1"}
    events = simulate("claims", 300, seed=5, anomalies=Anomalies(stuck=StuckCases(
        after_activity="Assessment", share=0.2))).events
    store.write(events)
    store.write([ev(1, "claims", "tie", minute=0), ev(2, "claims", "tie", minute=0)])
    frame = store.events("claims")  # time order, ties in arrival order
    last = frame.group_by("case_id", maintain_order=True).agg(
        pl.col("activity").last(), pl.col("timestamp").last().alias("last"),
        pl.col("timestamp").first().alias("first"), pl.len().alias("n"))
    want = [(r["case_id"], r["activity"], to_time_us(r["last"]), to_time_us(r["first"]), r["n"])
            for r in last.sort("case_id").iter_rows(named=True) if r["activity"] not in ends]
    got = store.open_cases("claims", ends)
    assert [(c.case_id, c.activity, c.last_us, c.started_us, c.events) for c in got] == want
    assert ("tie", "Step 2") in [(c.case_id, c.activity) for c in got]  # the later arrival
    assert 0 < len(got) < last.height  # some open (the stuck ones), most finished
    assert len(store.open_cases("claims", ())) == last.height  # no end activity: all open
    assert store.open_cases("nothing here", ends) == []


@pytest.mark.parametrize("name", ["x' OR '1'='1", "o'brien", "a\"b; DROP TABLE events; --",
                                  "ü/☃", "%s %(x)s ?"])
def test_hostile_process_names_read_exactly_their_events(store: EventStore, name: str) -> None:
    """A process name with quotes, placeholders or SQL in it reads its own events and nothing else."""
    store.write([ev(1, process=name), ev(2, process="other")])
    assert store.events(name)["event_id"].to_list() == ["e1"]
    assert store.events("other").height == 1
    assert {c.process for c in store.counts()} == {name, "other"}


def test_since_reads_stored_events_after_a_seq_in_bounded_batches(store: EventStore) -> None:
    """last_seq is 0 on an empty store, then the highest seq; since(seq, limit) gives the next
    events in arrival order with their seq and Kafka coordinates, at most limit at a time."""
    assert store.last_seq() == 0 and store.since(0, 10) == []
    store.write([ev(3), ev(1)], [Coordinates("t", 2, 40), None])
    store.write([ev(2, process="other")])
    rows = store.since(0, 2)
    assert [e.event_id for _, e, _ in rows] == ["e3", "e1"]
    assert rows[0][1] == ev(3) and rows[0][2] == Coordinates("t", 2, 40) and rows[1][2] is None
    [(seq, event, _)] = store.since(rows[1][0], 2)
    assert (event.event_id, event.process) == ("e2", "other")
    assert rows[0][0] < rows[1][0] < seq == store.last_seq()
    assert store.since(seq, 100) == []


def test_changed_since_names_the_processes_written_after_a_seq(store: EventStore) -> None:
    """A cache reader learns which processes got events after the seq it last saw, and no others."""
    store.write([ev(1, process="p"), ev(2, process="q")])
    seen = store.last_seq()
    q_seq = store.changed_since(0)["q"]
    assert store.changed_since(seen) == {}
    store.write([ev(3, process="p"), ev(1, process="p")])
    assert store.changed_since(seen) == {"p": store.last_seq()}
    assert store.changed_since(0) == {"p": store.last_seq(), "q": q_seq}


def test_subscriber_marks_persist_across_reopening(url: str) -> None:
    """A subscriber's saved mark is read back (also after reopening the store) and overwritten
    by the next save; an unknown subscriber has none."""
    store = open_store(url)
    assert store.subscriber_mark("alerts") is None
    store.save_subscriber_mark("alerts", 7)
    store.save_subscriber_mark("alerts", 9)
    store.close()
    store = open_store(url)
    assert store.subscriber_mark("alerts") == 9 and store.subscriber_mark("web") is None
    store.close()


def test_concurrent_writers_of_overlapping_batches(url: str) -> None:
    """Four writers, each with its own connection, store the same 1,200 events at once in
    different orders and batches: each event is stored once, and reported new by exactly one
    writer; arrival seqs are unique and in one order."""
    events = [ev(i, case=f"c{i % 37}") for i in range(1_200)]
    writers, reports, errors = 4, Counter[str](), []
    start, lock = threading.Barrier(writers), threading.Lock()

    def write(w: int) -> None:
        try:
            mine = events[w * 300:] + events[:w * 300]
            store = open_store(url)
            start.wait()
            for at in range(0, len(mine), 150 + 50 * w):
                batch = mine[at:at + 150 + 50 * w]
                new = [e.event_id for e, fresh in zip(batch, store.write(batch), strict=True)
                       if fresh]
                with lock:
                    reports.update(new)
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert reports == Counter(e.event_id for e in events)
    store = open_store(url)
    rows = store.since(0, 10_000)
    assert sorted(e.event_id for _, e, _ in rows) == sorted(e.event_id for e in events)
    assert [s for s, _, _ in rows] == sorted({s for s, _, _ in rows})
    store.close()


def test_concurrent_openers_create_one_schema(url: str) -> None:
    """Six processes' worth of openers on a new store at once all succeed, on the current
    schema version."""
    results: list[object] = []

    def opening() -> None:
        try:
            open_store(url).close()
            results.append("ok")
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=opening) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == ["ok"] * 6
    check = inspect_store(url)
    assert check.schema_version == check.expected_version >= 1


def test_commits_are_durable(url: str) -> None:
    """The store commits durably whatever the database's default: SQLite synchronous=FULL,
    PostgreSQL synchronous_commit=on even where the database says off."""
    if url.startswith("postgresql"):
        dbname = url.rsplit("/", 1)[1]
        execute(url, f'ALTER DATABASE "{dbname}" SET synchronous_commit = off')
    store = open_store(url)
    expected = "synchronous=FULL" if url.startswith("sqlite") else "synchronous_commit=on"
    assert store.durability() == expected  # type: ignore[attr-defined]
    store.close()


def test_inspect_reports_a_healthy_store_and_changes_nothing(store: EventStore, url: str) -> None:
    """inspect_store finds the store reachable, writable, at the current version, without an
    error, and leaves it as it was: the next event follows the last seq directly."""
    store.write([ev(1), ev(2)])
    last = store.last_seq()
    check = inspect_store(url)
    assert (check.reachable, check.writable, check.error) == (True, True, None)
    assert check.schema_version == check.expected_version >= 1
    assert [c.events for c in store.counts()] == [2]
    store.write([ev(3)])
    assert store.last_seq() == last + 1


def test_a_newer_schema_is_refused_not_downgraded(url: str) -> None:
    """A store whose schema version is newer than this code's is refused at open with a
    StoreError saying so, and inspect_store reports the version it found."""
    open_store(url).close()
    execute(url, "UPDATE schema_version SET version = 99 WHERE component = 'events'")
    with pytest.raises(StoreError, match=r"schema version 99, newer than this Backlight knows"):
        open_store(url)
    check = inspect_store(url)
    assert check.schema_version == 99 and check.expected_version < 99
    assert check.error is not None and "newer" in check.error
