"""The event store: a small interface, and its embedded SQLite implementation.

Every backend keeps each event once (``event_id`` is unique; writing an event that is already
there does nothing), keeps times in UTC, and hands one process's events back as a polars frame
with the columns in ``FRAME_SCHEMA``. A PostgreSQL backend implements the same interface.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import polars as pl

from ingest.errors import StoreError
from ingest.sqlite import connect
from schemas.event import CaseEvent, to_time_us

FRAME_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "case_id": pl.String(),
    "activity": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "lifecycle": pl.String(),
    "resource": pl.String(),
    "team": pl.String(),
    "attributes": pl.String(),
    "seq": pl.Int64(),
}
"""Columns of ``EventStore.events``; ``seq`` is arrival order (ties in time keep it)."""
_ROW_SCHEMA = {**FRAME_SCHEMA, "timestamp": pl.Int64()}
"""The rows as read: times as integer microseconds, in FRAME_SCHEMA's column order."""


@dataclass(frozen=True)
class Coordinates:
    """Where an event came from in Kafka (None for events written without Kafka)."""

    topic: str
    partition: int
    offset: int


StoredEvent = tuple[int, CaseEvent, Coordinates | None]
"""An event as ``EventStore.since`` returns it: (arrival seq, event, where it came from)."""


@dataclass(frozen=True)
class ProcessCount:
    process: str
    events: int
    cases: int


class EventStore(Protocol):
    """What the consumer writes to and mining reads from."""

    def write(
        self, events: Sequence[CaseEvent], origins: Sequence[Coordinates | None] | None = None
    ) -> list[bool]:
        """Store a batch in one transaction; say for each event whether it was new (not
        already stored, and not a repeat of an earlier event in the same batch)."""
        ...

    def events(self, process: str, since: datetime | None = None,
               until: datetime | None = None) -> pl.DataFrame:
        """The events of one process, optionally in [since, until), as a ``FRAME_SCHEMA`` frame."""
        ...

    def counts(self) -> list[ProcessCount]:
        """Events and cases per process."""
        ...

    def last_seq(self) -> int:
        """The highest arrival seq stored (0 when the store is empty)."""
        ...

    def changed_since(self, seq: int) -> dict[str, int]:
        """The processes with events stored after ``seq``, each with its highest new seq (what
        a reader caching per process checks to know which of its entries are stale)."""
        ...

    def since(self, seq: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` stored events with an arrival seq above ``seq``, in seq order."""
        ...

    def subscriber_mark(self, name: str) -> int | None:
        """The last seq the named subscriber has handled, None if it never recorded one."""
        ...

    def save_subscriber_mark(self, name: str, seq: int) -> None:
        """Record that the named subscriber has handled every event up to ``seq``."""
        ...

    def close(self) -> None: ...


_DDL = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    process    TEXT NOT NULL,
    case_id    TEXT NOT NULL,
    activity   TEXT NOT NULL,
    time_us    INTEGER NOT NULL,
    lifecycle  TEXT NOT NULL,
    resource   TEXT,
    team       TEXT,
    attributes TEXT,
    topic      TEXT,
    partition  INTEGER,
    "offset"   INTEGER,
    stored_us  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))
);
CREATE INDEX IF NOT EXISTS events_process_time ON events (process, time_us);
CREATE INDEX IF NOT EXISTS events_process_case ON events (process, case_id, time_us);
CREATE TABLE IF NOT EXISTS subscriber_marks (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
);
"""
_INSERT = (
    "INSERT INTO events (event_id, process, case_id, activity, time_us, lifecycle, resource, team,"
    ' attributes, topic, partition, "offset") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)'
    " ON CONFLICT (event_id) DO NOTHING"
)
_EXISTING = "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))"
_SINCE = (
    "SELECT seq, event_id, process, case_id, activity, time_us, lifecycle, resource, team,"
    ' attributes, topic, partition, "offset" FROM events WHERE seq > ? ORDER BY seq LIMIT ?'
)
_SAVE_MARK = (
    "INSERT INTO subscriber_marks (name, seq) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq"
)


class SQLiteStore:
    """The embedded store: one SQLite file in WAL mode, safe for one writer and many readers.

    ``write`` and ``counts`` use one connection; ``last_seq``, ``since`` and the subscriber
    marks use one connection per thread, so a subscriber's thread reading the store never
    sees a write transaction that is still open on the writer's connection.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        try:
            self._db = connect(self.path, _DDL)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the SQLite store at {self.path}: {exc}") from exc

    def write(
        self, events: Sequence[CaseEvent], origins: Sequence[Coordinates | None] | None = None
    ) -> list[bool]:
        if not events:
            return []
        if origins is None:
            origins = [None] * len(events)
        rows = [
            (e.event_id, e.process, e.case_id, e.activity, e.time_us, e.lifecycle, e.resource,
             e.team, e.attributes, o.topic if o else None, o.partition if o else None,
             o.offset if o else None)
            for e, o in zip(events, origins, strict=True)
        ]
        ids = [e.event_id for e in events]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seen = {row[0] for row in self._db.execute(_EXISTING, (json.dumps(ids),))}
                new = []
                for event_id in ids:
                    new.append(event_id not in seen)
                    seen.add(event_id)
                self._db.executemany(_INSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return new
        except sqlite3.Error as exc:
            raise StoreError(f"writing {len(rows)} events to {self.path} failed: {exc}") from exc

    def events(self, process: str, since: datetime | None = None,
               until: datetime | None = None) -> pl.DataFrame:
        # Read through this process's own SQLite library (a per-thread connection). A second
        # SQLite copy in the same process (connectorx, ADBC) must never open the file: POSIX
        # locks are per process, so its close releases our locks and checkpoints the WAL under
        # our connections; that corrupted stores (tests/test_store.py shows the sequence).
        sql = ("SELECT event_id, case_id, activity, time_us, lifecycle, resource, team,"
               " attributes, seq FROM events WHERE process = ?")
        params: list[object] = [process]
        if since is not None:
            sql += " AND time_us >= ?"
            params.append(int(to_time_us(since)))
        if until is not None:
            sql += " AND time_us < ?"
            params.append(int(to_time_us(until)))
        try:
            cursor = self._reader().execute(sql, params)
            chunks = []
            while rows := cursor.fetchmany(50_000):
                chunks.append(pl.DataFrame(rows, schema=_ROW_SCHEMA, orient="row"))
        except sqlite3.Error as exc:
            raise StoreError(f"reading {process!r} from {self.path} failed: {exc}") from exc
        if not chunks:
            return pl.DataFrame(schema=FRAME_SCHEMA)
        frame = pl.concat(chunks, rechunk=True)
        return frame.select(
            pl.col(name).cast(dtype) if name != "timestamp"
            else pl.col(name).cast(pl.Int64).cast(dtype)
            for name, dtype in FRAME_SCHEMA.items())

    def counts(self) -> list[ProcessCount]:
        rows = self._db.execute(
            "SELECT process, COUNT(*), COUNT(DISTINCT case_id) FROM events GROUP BY process"
            " ORDER BY process").fetchall()
        return [ProcessCount(p, n, c) for p, n, c in rows]

    def _reader(self) -> sqlite3.Connection:
        """This thread's own connection (opened on first use, closed by ``close``)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                     check_same_thread=False)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the SQLite store at {self.path}: {exc}") from exc
            with self._readers_lock:
                self._readers.append(db)
            self._local.db = db
        return db

    def last_seq(self) -> int:
        try:
            row = self._reader().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"reading the last seq from {self.path} failed: {exc}") from exc
        return int(row[0])

    def changed_since(self, seq: int) -> dict[str, int]:
        try:
            # NOT INDEXED: a range of the rowid (seq), not a scan of the process index that
            # the GROUP BY would otherwise pick (all rows, on every cache check).
            rows = self._reader().execute(
                "SELECT process, MAX(seq) FROM events NOT INDEXED WHERE seq > ? GROUP BY process",
                (seq,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading the processes changed after seq {seq} from {self.path} "
                             f"failed: {exc}") from exc
        return {str(p): int(m) for p, m in rows}

    def since(self, seq: int, limit: int) -> list[StoredEvent]:
        try:
            rows = self._reader().execute(_SINCE, (seq, limit)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading events after seq {seq} from {self.path} failed: "
                             f"{exc}") from exc
        return [
            (s, CaseEvent(eid, proc, case, act, t, lc, res, team, attrs),
             None if topic is None else Coordinates(topic, part, off))
            for s, eid, proc, case, act, t, lc, res, team, attrs, topic, part, off in rows
        ]

    def subscriber_mark(self, name: str) -> int | None:
        try:
            row = self._reader().execute("SELECT seq FROM subscriber_marks WHERE name = ?",
                                         (name,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"reading subscriber {name!r}'s mark from {self.path} failed: "
                             f"{exc}") from exc
        return None if row is None else int(row[0])

    def save_subscriber_mark(self, name: str, seq: int) -> None:
        try:
            self._reader().execute(_SAVE_MARK, (name, seq))
        except sqlite3.Error as exc:
            raise StoreError(f"saving subscriber {name!r}'s mark to {self.path} failed: "
                             f"{exc}") from exc

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for db in readers:
            db.close()
        self._db.close()


def open_store(url: str) -> EventStore:
    """Open the store a URL names: ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise StoreError(f"store url {url!r} names no file: use sqlite:///path/to/file.db")
        return SQLiteStore(path)
    if parsed.scheme in ("postgresql", "postgres"):
        raise StoreError("the PostgreSQL store is not built yet: use sqlite:///file.db for now")
    raise StoreError(f"store url {url!r}: unknown scheme {parsed.scheme!r} (use sqlite:///...)")
