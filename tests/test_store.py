"""The SQLite event store: each event once, UTC times, per-process frames, hostile names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.errors import StoreError
from ingest.store import FRAME_SCHEMA, Coordinates, open_store
from schemas.event import CaseEvent, to_time_us

T0 = to_time_us(datetime(2026, 3, 4, 8, 15, tzinfo=UTC))


def ev(i: int, process: str = "claims", case: str = "c1") -> CaseEvent:
    return CaseEvent(f"e{i}", process, case, f"Step {i}", T0 + i * 60_000_000, "complete",
                     "u-1", "back-office/claims", '{"amount":1}')


def test_write_is_idempotent_on_event_id(tmp_path: Path) -> None:
    """Writing a batch twice stores it once; write says which events were new (a repeat
    within one batch is not)."""
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    batch = [ev(i) for i in range(5)]
    assert store.write(batch, [Coordinates("t", 0, i) for i in range(5)]) == [True] * 5
    assert store.write([*batch[2:], ev(9), ev(9)]) == [False, False, False, True, False]
    assert [(c.process, c.events, c.cases) for c in store.counts()] == [("claims", 6, 1)]


def test_frame_has_schema_utc_times_and_arrival_order(tmp_path: Path) -> None:
    """events() gives FRAME_SCHEMA columns, the exact UTC time, and seq in arrival order."""
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.write([ev(3), ev(1), ev(2)])
    frame = store.events("claims").sort("seq")
    assert dict(frame.schema) == FRAME_SCHEMA
    assert frame["event_id"].to_list() == ["e3", "e1", "e2"]
    assert frame["seq"].n_unique() == 3
    assert frame["timestamp"][1] == datetime(2026, 3, 4, 8, 16, tzinfo=UTC)


def test_time_window_is_half_open(tmp_path: Path) -> None:
    """since is inclusive, until exclusive."""
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.write([ev(i) for i in range(10)])
    frame = store.events("claims", since=datetime(2026, 3, 4, 8, 17, tzinfo=UTC),
                         until=datetime(2026, 3, 4, 8, 20, tzinfo=UTC))
    assert sorted(frame["event_id"].to_list()) == ["e2", "e3", "e4"]


@pytest.mark.parametrize("name", ["x' OR '1'='1", "o'brien", "a\"b; DROP TABLE events; --", "ü/☃"])
def test_hostile_process_names_read_exactly_their_events(tmp_path: Path, name: str) -> None:
    """A process name with quotes or SQL in it reads its own events and nothing else."""
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.write([ev(1, process=name), ev(2, process="other")])
    assert store.events(name)["event_id"].to_list() == ["e1"]
    assert store.events("other").height == 1


def test_store_path_with_spaces_and_percent(tmp_path: Path) -> None:
    """A store file whose path has spaces and % signs is read back."""
    store = open_store(f"sqlite:///{tmp_path / 'my store %20' / 's.db'}")
    store.write([ev(1)])
    assert store.events("claims").height == 1


def test_bad_urls_name_the_problem() -> None:
    """Unknown schemes and a sqlite URL without a file get a message saying what to use."""
    with pytest.raises(StoreError, match="unknown scheme 'mysql'"):
        open_store("mysql://x/y")
    with pytest.raises(StoreError, match="names no file"):
        open_store("sqlite://")


def test_since_reads_stored_events_after_a_seq_in_bounded_batches(tmp_path: Path) -> None:
    """last_seq is 0 on an empty store, then the highest seq; since(seq, limit) gives the next
    events in arrival order with their seq and Kafka coordinates, at most limit at a time."""
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    assert store.last_seq() == 0 and store.since(0, 10) == []
    store.write([ev(3), ev(1)], [Coordinates("t", 2, 40), None])
    store.write([ev(1), ev(2, process="other")])
    assert store.last_seq() == 3
    rows = store.since(0, 2)
    assert [(s, e.event_id) for s, e, _ in rows] == [(1, "e3"), (2, "e1")]
    assert rows[0][1] == ev(3) and rows[0][2] == Coordinates("t", 2, 40) and rows[1][2] is None
    assert [(s, e.event_id, e.process) for s, e, _ in store.since(2, 2)] == [(3, "e2", "other")]
    assert store.since(3, 100) == []


def test_subscriber_marks_persist_across_reopening(tmp_path: Path) -> None:
    """A subscriber's saved mark is read back (also after reopening the file) and overwritten
    by the next save; an unknown subscriber has none."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = open_store(url)
    assert store.subscriber_mark("alerts") is None
    store.save_subscriber_mark("alerts", 7)
    store.save_subscriber_mark("alerts", 9)
    store.close()
    store = open_store(url)
    assert store.subscriber_mark("alerts") == 9 and store.subscriber_mark("web") is None
    store.close()


def test_changed_since_names_the_processes_written_after_a_seq(tmp_path: Path) -> None:
    """A cache reader learns which processes got events after the seq it last saw, and no others."""
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    store.write([ev(1, process="p"), ev(2, process="q")])
    seen = store.last_seq()
    assert store.changed_since(seen) == {}
    store.write([ev(3, process="p"), ev(1, process="p")])
    assert store.changed_since(seen) == {"p": store.last_seq()}
    assert store.changed_since(0) == {"p": store.last_seq(), "q": 2}
    store.close()
