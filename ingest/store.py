"""The event store: a small interface, its embedded SQLite implementation, and opening a URL.

Every backend keeps each event once (``event_id`` is unique; writing an event that is already
there does nothing), keeps times in UTC, and hands one process's events back as a polars frame
with the columns in ``FRAME_SCHEMA``. ``PostgresStore`` (ingest/postgres.py) implements the
same interface; both pass the same contract tests (tests/test_store_contract.py). Their schemas
are versioned and upgraded in place when opened (ingest/migrations.py). A store URL is never
shown with its password (``mask_url``).
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import polars as pl
from msgspec.structs import astuple

from ingest.errors import RowRejected, StoreError, rejects_rows
from ingest.migrations import SQLITE, expected, migrate_sqlite, sqlite_version
from ingest.open_cases import OpenCase, open_cases, open_cases_query
from ingest.pg_session import PostgresSession
from ingest.sqlite import connect, transaction
from schemas.event import CaseEvent, from_time_us, to_time_us
from schemas.frame import FRAME_SCHEMA, Coordinates

FRAME_COLUMNS = "event_id, case_id, activity, time_us, lifecycle, resource, team, attributes, seq"
"""The ``events`` columns that make a FRAME_SCHEMA row, in its order (times as microseconds)."""
EVENT_COLUMNS = ("event_id", "process", "case_id", "activity", "time_us", "lifecycle", "resource",
                 "team", "attributes", "topic", "partition", "offset")
"""The columns a write fills, in the order of ``event_row``."""
READ_CHUNK = 10_000
"""Rows fetched at a time by ``events``: a process is read in chunks, never as one list."""
_ROW_SCHEMA = {**FRAME_SCHEMA, "timestamp": pl.Int64()}
"""The rows as read: times as integer microseconds, in FRAME_SCHEMA's column order."""


# event_row and event_values read both Structs' fields in declaration order as the columns.
assert CaseEvent.__struct_fields__ + Coordinates.__struct_fields__ == EVENT_COLUMNS

StoredEvent = tuple[int, CaseEvent, Coordinates | None]
"""An event as ``EventStore.since`` returns it: (arrival seq, event, where it came from)."""


@dataclass(frozen=True)
class ProcessCount:
    process: str
    events: int
    cases: int


class EventStore(Protocol):
    """What the consumer writes to and mining reads from.

    The write contract, the same on every backend: ``write`` stores a batch in one transaction
    (all of it or, on error, none), and whether each event is new is decided by the insert
    itself (``INSERT ... ON CONFLICT (event_id) DO NOTHING``, its stored rows told by RETURNING
    or, on SQLite, by the arrival seqs it took), not by a read before it, so it holds under
    concurrent writers: however many writers store overlapping batches at once, each event is
    stored once and reported new by exactly one ``write`` call, at its first occurrence in that
    batch. A write that raises may still have committed (the connection dropped after the
    commit was sent): writing the batch again is safe, and reports those events as not new.

    A reader following the arrival seqs (``since``, ``changed_since``, ``last_seq``) never
    sees a gap that fills in later: on SQLite seqs increase with commit order; on PostgreSQL,
    whose writers commit in parallel, those reads see only the rows no write in flight can
    precede (ingest/postgres.py), so a commit may show there a moment after it returned.
    Seqs may have gaps (PostgreSQL uses up numbers on duplicates and failed writes).
    A ``StoreError`` is the only error a store raises; its message never shows a password.
    On ``write`` it is either transient (retrying the same batch may succeed) or a
    ``RowRejected``: the database refused the content of a row of the batch (nothing of the
    batch is stored; the consumer bisects it to find the row, ingest/store_writes.py).
    """

    def write(
        self, events: Sequence[CaseEvent], origins: Sequence[Coordinates | None] | None = None
    ) -> list[bool]:
        """Store a batch in one transaction; say for each event whether it was new (not
        already stored, and not a repeat of an earlier event in the same batch)."""
        ...

    def events(self, process: str, since: datetime | None = None,
               until: datetime | None = None, *,
               cases_since: datetime | None = None) -> pl.DataFrame:
        """The events of one process, optionally in [since, until), as a ``FRAME_SCHEMA`` frame
        in time order (ties in arrival order), read from the store in chunks. With
        ``cases_since``, only the cases with an event at or after it (all their events in
        the range, earlier ones too): what a reader bounded in time needs, read through the
        indexes at the cost of those cases, not of the process's history."""
        ...

    def counts(self) -> list[ProcessCount]:
        """Events and cases per process, by process name."""
        ...

    def open_cases(self, process: str, end_activities: Collection[str]) -> list[OpenCase]:
        """The process's cases whose latest event is not one of ``end_activities``, by case
        id, each with its current step and age (read without loading the process's events)."""
        ...

    def last_seq(self) -> int:
        """The highest arrival seq stored (0 when the store is empty)."""
        ...

    def latest(self, process: str, until: datetime | None = None) -> datetime | None:
        """The time of the process's latest event (before ``until``); None without one."""
        ...

    def out_of_range(self, process: str, latest: datetime) -> int:
        """How many of the process's events have a time before 1970 or after ``latest``."""
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


_PASSWORD_PARAM = re.compile(r"(?i)(password=)[^&;\s]*")


def mask_url(url: str) -> str:
    """The URL as it may be shown: its password, if any, replaced by ``***``
    (``postgresql://user:***@host/db``), also a ``password=`` query parameter."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _PASSWORD_PARAM.sub(r"\1***", url)
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    tail = _PASSWORD_PARAM.sub(r"\1***", tail)
    return f"{scheme}://{netloc}{slash}{tail}"


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message) on one line, without the URL's password in any form."""
    text = " ".join(text.split())
    password = _password(url)
    for secret in {password, unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return _PASSWORD_PARAM.sub(r"\1***", text)


def _password(url: str) -> str:
    netloc = url.partition("://")[2].partition("/")[0]
    userinfo, at, _ = netloc.rpartition("@")
    return userinfo.partition(":")[2] if at else ""


_NO_ORIGIN = (None, None, None)


def event_row(event: CaseEvent, origin: Coordinates | None) -> tuple[Any, ...]:
    """An event as the values of ``EVENT_COLUMNS``."""
    return astuple(event) + (_NO_ORIGIN if origin is None else astuple(origin))


def event_values(events: Sequence[CaseEvent], origins: Sequence[Coordinates | None]) -> list[Any]:
    """The values of ``event_row`` for each event, one flat list (a multi-row INSERT's
    parameters). ``CaseEvent`` and ``Coordinates`` declare their fields in the order of
    ``EVENT_COLUMNS``, so msgspec's C ``astuple`` gives them (4x faster than by name)."""
    values: list[Any] = []
    extend = values.extend
    for event, origin in zip(events, origins, strict=True):
        extend(astuple(event))
        extend(_NO_ORIGIN if origin is None else astuple(origin))
    return values


def first_inserted(ids: Sequence[str], inserted: set[str]) -> list[bool]:
    """The new-flags of a batch: an event is new where the insert stored it, at its first
    occurrence in the batch (a repeat within the batch is not new)."""
    seen: set[str] = set()
    flags = []
    for event_id in ids:
        flags.append(event_id in inserted and event_id not in seen)
        seen.add(event_id)
    return flags


def frame_from_rows(chunks: Iterable[Sequence[tuple[Any, ...]]]) -> pl.DataFrame:
    """A FRAME_SCHEMA frame from chunks of ``FRAME_COLUMNS`` rows (each chunk becomes a small
    frame as it arrives, so the rows as Python tuples never add up to the whole process)."""
    frames = [pl.DataFrame(rows, schema=_ROW_SCHEMA, orient="row") for rows in chunks if rows]
    if not frames:
        return pl.DataFrame(schema=FRAME_SCHEMA)
    # Not rechunked: one contiguous copy of every column would hold the chunks and the copy at
    # once (about 30 MB more at peak for BPIC 2012); every reader sorts or filters it anyway.
    frame = pl.concat(frames, rechunk=False)
    return frame.select(
        pl.col(name).cast(dtype) if name != "timestamp"
        else pl.col(name).cast(pl.Int64).cast(dtype)
        for name, dtype in FRAME_SCHEMA.items())


def stored_event(row: Sequence[Any]) -> StoredEvent:
    """A ``since`` row (seq, the event's columns, topic, partition, offset) as a StoredEvent."""
    s, eid, proc, case, act, t, lc, res, team, attrs, topic, part, off = row
    return (int(s), CaseEvent(eid, proc, case, act, int(t), lc, res, team, attrs),
            None if topic is None else Coordinates(topic, int(part), int(off)))


OUT_OF_RANGE = (
    "SELECT (SELECT COUNT(*) FROM events{hint} WHERE process = ? AND time_us < 0)"
    " + (SELECT COUNT(*) FROM events{hint} WHERE process = ? AND time_us > ?)")
"""Two ranges of the (process, time_us) index: events before 1970 and after the latest allowed
(``{hint}``: SQLite names the index, its planner would otherwise count along the process's
case index, all of its events)."""


def latest_query(process: str, until: datetime | None, mark: str) -> tuple[str, list[object]]:
    """The SELECT of ``EventStore.latest`` (one step down the (process, time_us) index)."""
    sql = f"SELECT MAX(time_us) FROM events WHERE process = {mark}"  # noqa: S608 (constants)
    params: list[object] = [process]
    if until is not None:
        sql += f" AND time_us < {mark}"
        params.append(int(to_time_us(until)))
    return sql, params


def events_query(process: str, since: datetime | None, until: datetime | None,
                 mark: str, cases_since: datetime | None = None,
                 index_hints: bool = False) -> tuple[str, list[object]]:
    """The SELECT of ``EventStore.events`` with ``mark`` as the parameter placeholder.

    ``cases_since`` is a semi-join: the (process, time_us) index finds the cases touched since
    then, the (process, case_id, time_us) index their events. ``index_hints`` (SQLite) names
    those indexes: without statistics SQLite's planner would scan the process's whole time
    index instead (PostgreSQL's planner has statistics and finds the same plan itself)."""
    by_case = " INDEXED BY events_process_case" if index_hints and cases_since else ""
    by_time = " INDEXED BY events_process_time" if index_hints else ""
    sql = f"SELECT {FRAME_COLUMNS} FROM events{by_case} WHERE process = {mark}"  # noqa: S608
    params: list[object] = [process]
    if cases_since is not None:
        sql += (f" AND case_id IN (SELECT case_id FROM events{by_time}"  # noqa: S608 (constants)
                f" WHERE process = {mark} AND time_us >= {mark}")
        params += [process, int(to_time_us(cases_since))]
        if until is not None:
            sql += f" AND time_us < {mark}"
            params.append(int(to_time_us(until)))
        sql += ")"
    if since is not None:
        sql += f" AND time_us >= {mark}"
        params.append(int(to_time_us(since)))
    if until is not None:
        sql += f" AND time_us < {mark}"
        params.append(int(to_time_us(until)))
    return sql + " ORDER BY time_us, seq", params


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


@dataclass(frozen=True)
class StoreCheck:
    """What ``inspect_store`` found, for ``backlight doctor``. ``schema_version`` is None where
    there is no store yet (it is created at first open) and 0 for a store from before
    versioning; one older than ``expected_version`` is upgraded at the next open. ``error``
    says what is wrong (unreachable, not writable, a newer schema), password masked."""

    reachable: bool
    schema_version: int | None
    expected_version: int
    writable: bool
    error: str | None


def inspect_store(url: str) -> StoreCheck:
    """Check the store a URL names without changing it: reachable, its schema version (no
    migration is applied), and writable (a write tried in a transaction rolled back). What
    it finds is reported in the result; only a URL that names no store raises ``StoreError``."""
    kind, target = parse_url(url)
    if kind == "postgresql":
        from ingest.postgres import inspect_postgres

        return inspect_postgres(target)
    return _inspect_sqlite(Path(target))


def _inspect_sqlite(path: Path) -> StoreCheck:
    want = expected(SQLITE)
    if not path.exists():
        parent = next(p for p in [path.parent, *path.parent.parents] if p.exists())
        writable = parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
        return StoreCheck(True, None, want, writable,
                          None if writable else f"cannot create the SQLite store {path}: "
                          f"{parent} is not a writable directory")
    try:
        db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=rw", uri=True, timeout=5,
                             isolation_level=None)
    except sqlite3.Error as exc:
        return StoreCheck(False, None, want, False, f"cannot open the SQLite store {path}: {exc}")
    try:
        try:
            found = sqlite_version(db)
        except sqlite3.Error as exc:
            return StoreCheck(False, None, want, False, f"{path} is not a readable SQLite "
                              f"store: {exc}")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("CREATE TABLE backlight_write_probe (x INTEGER)")
            finally:
                db.execute("ROLLBACK")
            writable, error = True, None
        except sqlite3.Error as exc:
            writable, error = False, f"the SQLite store {path} is not writable: {exc}"
    finally:
        db.close()
    if error is None and found is not None and found > want:
        error = (f"the store {path} has schema version {found}, newer than this Backlight "
                 f"knows ({want}): upgrade Backlight")
    return StoreCheck(True, found, want, writable, error)


def parse_url(url: str) -> tuple[str, str]:
    """("sqlite", path) or ("postgresql", url), or a StoreError naming the problem."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise StoreError(f"store url {mask_url(url)!r} names no file: "
                             "use sqlite:///path/to/file.db")
        return "sqlite", path
    if scheme in ("postgresql", "postgres"):
        return "postgresql", url
    raise StoreError(f"store url {mask_url(url)!r}: unknown scheme {scheme!r} "
                     "(use sqlite:///file.db or postgresql://user:password@host/db)")


def open_store(url: str, session: PostgresSession | None = None) -> EventStore:
    """Open the store a URL names: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or
    ``postgresql://user:password@host:port/database`` (libpq's URL, query options included;
    its connections get ``session``'s timeouts and keepalives, by default the defaults);
    the schema is created or upgraded on the way."""
    kind, target = parse_url(url)
    if kind == "postgresql":
        from ingest.postgres import PostgresStore

        return PostgresStore(target, session=session)
    return SQLiteStore(target)
