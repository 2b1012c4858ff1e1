"""The embedded event store: one SQLite file in WAL mode (the ``EventStore`` of storage/events.py)."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from schemas.event import CaseEvent, from_time_us, to_time_us
from schemas.frame import Coordinates
from storage.errors import RowRejected, StoreError, rejects_rows
from storage.events import (
    EVENT_COLUMNS,
    OUT_OF_RANGE,
    READ_CHUNK,
    ProcessCount,
    StoredEvent,
    event_values,
    events_query,
    first_inserted,
    frame_from_rows,
    latest_query,
    stored_event,
)
from storage.migrations import migrate_sqlite
from storage.open_cases import OpenCase, open_cases, open_cases_query
from storage.sqlite import connect, transaction

_SINCE = (
    "SELECT seq, event_id, process, case_id, activity, time_us, lifecycle, resource, team,"
    ' attributes, topic, partition, "offset" FROM events WHERE seq > ? ORDER BY seq LIMIT ?'
)
_SAVE_MARK = (
    "INSERT INTO subscriber_marks (name, seq) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq"
)
_ROWS_PER_INSERT = 2_500
"""Rows per INSERT statement (30,000 parameters; fewer where the SQLite build allows fewer, as
old ones with 999 do): a default 5,000-event batch is two statements. Each statement gives up
the GIL while SQLite runs it and then waits for it back behind the poll loop, so fewer, larger
statements store faster under load (2,500 against 1,000 rows: about 1.1-1.2x the consumer's
rate on BPIC 2012, alternated runs)."""


@functools.lru_cache(maxsize=8)
def _sqlite_insert(rows: int) -> str:
    """One multi-row INSERT of ``rows`` events that skips the event_ids already stored."""
    columns = ", ".join('"offset"' if c == "offset" else c for c in EVENT_COLUMNS)
    values = ",".join(["(" + ",".join("?" * len(EVENT_COLUMNS)) + ")"] * rows)
    return (f"INSERT INTO events ({columns}) VALUES {values}"  # noqa: S608 (constants)
            " ON CONFLICT (event_id) DO NOTHING")


_MAX_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM events"
_STORED_AFTER = "SELECT event_id FROM events WHERE seq > ?"


class SQLiteStore:
    """The embedded store: one SQLite file in WAL mode, safe for one writer and many readers.

    ``write`` uses one connection (the consumer calls it from its writer thread); every read
    uses one connection per thread, so a subscriber's thread reading the store never
    sees a write transaction that is still open on the writer's connection. Every connection
    commits with ``synchronous=FULL`` (durable once ``write`` returns) unless the caller asks
    for NORMAL (the benchmark's comparison).
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        try:
            self._db = connect(self.path, synchronous=synchronous)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the SQLite store at {self.path}: {exc}") from exc
        try:
            variables = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._chunk = max(1, min(_ROWS_PER_INSERT, variables // len(EVENT_COLUMNS)))
            migrate_sqlite(self._db, str(self.path))
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot upgrade the SQLite store at {self.path}: {exc}") from exc
        except StoreError:
            self._db.close()
            raise

    def write(
        self, events: Sequence[CaseEvent], origins: Sequence[Coordinates | None] | None = None
    ) -> list[bool]:
        if not events:
            return []
        if origins is None:
            origins = [None] * len(events)
        rows = len(events)
        values = event_values(events, origins)
        width = len(EVENT_COLUMNS)
        db = self._db
        try:
            with transaction(db):
                # Which rows the insert stored, without RETURNING: RETURNING hands back one row
                # per step, and each step gives up and takes back the GIL, so the writer thread
                # queued behind the poll loop for every row. The transaction holds the write
                # lock, so the rows stored are exactly those with a seq above the one before.
                before, changes = db.execute(_MAX_SEQ).fetchone()[0], db.total_changes
                for start in range(0, rows, self._chunk):
                    chunk = values[start * width:(start + self._chunk) * width]
                    db.execute(_sqlite_insert(len(chunk) // width), chunk)
                stored = db.total_changes - changes
                inserted = (None if stored == rows else
                            {r[0] for r in db.execute(_STORED_AFTER, (before,))} if stored else set())
        except (sqlite3.Error, UnicodeEncodeError, OverflowError) as exc:
            if rejects_rows(exc):
                reason = (str(exc) if isinstance(exc, sqlite3.Error) else
                          f"a value SQLite cannot take ({type(exc).__name__}: {exc.args[0]})"
                          if isinstance(exc, OverflowError) else
                          f"text SQLite cannot encode ({exc.reason})")
                raise RowRejected(f"writing {rows} events to {self.path}: the database "
                                  f"refused a row: {reason}", reason) from exc
            raise StoreError(f"writing {rows} events to {self.path} failed: {exc}") from exc
        if inserted is None:  # all new (the usual case): no repeat within the batch either
            return [True] * rows
        return first_inserted([e.event_id for e in events], inserted)

    def events(self, process: str, since: datetime | None = None,
               until: datetime | None = None, *,
               cases_since: datetime | None = None) -> pl.DataFrame:
        # Read through this process's own SQLite library (a per-thread connection). A second
        # SQLite copy in the same process (connectorx, ADBC) must never open the file: POSIX
        # locks are per process, so its close releases our locks and checkpoints the WAL under
        # our connections; that corrupted stores (tests/test_store_integrity.py guards it).
        sql, params = events_query(process, since, until, "?", cases_since, index_hints=True)
        try:
            cursor = self._reader().execute(sql, params)
            return frame_from_rows(iter(lambda: cursor.fetchmany(READ_CHUNK), []))
        except sqlite3.Error as exc:
            raise StoreError(f"reading {process!r} from {self.path} failed: {exc}") from exc

    def open_cases(self, process: str, end_activities: Collection[str]) -> list[OpenCase]:
        sql, params = open_cases_query(process, end_activities, "?")
        try:
            return open_cases(self._reader().execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"reading the open cases of {process!r} from {self.path} failed: "
                             f"{exc}") from exc

    def counts(self) -> list[ProcessCount]:
        try:
            # This thread's own connection: the writer's may be in a write transaction.
            rows = self._reader().execute(
                "SELECT process, COUNT(*), COUNT(DISTINCT case_id) FROM events GROUP BY process"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"counting the events in {self.path} failed: {exc}") from exc
        return sorted((ProcessCount(p, n, c) for p, n, c in rows), key=lambda c: c.process)

    def durability(self) -> str:
        """How commits reach the disk, as the connections report it (``synchronous=FULL``)."""
        level = self._db.execute("PRAGMA synchronous").fetchone()[0]
        return f"synchronous={dict(enumerate(('OFF', 'NORMAL', 'FULL', 'EXTRA')))[level]}"

    def _reader(self) -> sqlite3.Connection:
        """This thread's own connection (opened on first use, closed by ``close``)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                     check_same_thread=False)
                db.execute(f"PRAGMA synchronous={self._synchronous}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the SQLite store at {self.path}: {exc}") from exc
            with self._readers_lock:
                self._readers.append(db)
            self._local.db = db
        return db

    def latest(self, process: str, until: datetime | None = None) -> datetime | None:
        sql, params = latest_query(process, until, "?")
        try:
            row = self._reader().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"reading the latest {process!r} event from {self.path} failed: "
                             f"{exc}") from exc
        return None if row[0] is None else from_time_us(int(row[0]))

    def out_of_range(self, process: str, latest: datetime) -> int:
        try:
            sql = OUT_OF_RANGE.format(hint=" INDEXED BY events_process_time")
            row = self._reader().execute(sql, (process, process, to_time_us(latest))).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"counting the {process!r} events out of range in {self.path} "
                             f"failed: {exc}") from exc
        return int(row[0])

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
        return [stored_event(row) for row in rows]

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
