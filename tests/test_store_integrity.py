"""The store's file stays intact when reads, the alert state and the outbox share it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from ingest.simulate import simulate
from schemas.alerts import Review
from storage import Outbox, SQLiteAlertState, SQLiteStore


def integrity(db: Path) -> str:
    """SQLite's own verdict on the file."""
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_reading_events_beside_other_writers_keeps_the_file_intact(tmp_path: Path) -> None:
    """Read a process while the alert state and the outbox hold the same file open, then
    write through each: the file passes integrity_check and holds every write."""
    db = tmp_path / "store.db"
    store = SQLiteStore(db)
    state = SQLiteAlertState(db)
    outbox = Outbox(db)
    events = simulate("claims", 40, seed=1).events
    store.write(events)
    assert store.events("claims").height == len(events)
    state.record_review(Review("claims", "ann", datetime.now(UTC), "checked"))
    more = simulate("payments", 30, seed=2).events
    store.write(more)
    assert store.events("payments").height == len(more)
    outbox.close()
    state.close()
    store.close()
    assert integrity(db) == "ok"
    reopened = SQLiteAlertState(db)
    assert [r.by for r in reopened.reviews("claims")] == ["ann"]
    reopened.close()
    again = SQLiteStore(db)
    assert [(c.process, c.events) for c in again.counts()] == [
        ("claims", len(events)), ("payments", len(more))]
    again.close()
