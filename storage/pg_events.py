"""The PostgreSQL event store (psycopg 3): several consumers on several hosts share one database.

Same interface and contract as the SQLite store (storage/sqlite_events.py): one transaction per batch;
"new or already stored" decided by ``INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING
event_id`` (one multi-row insert per chunk: the rows go as one array per column and
``unnest`` turns them into rows, so a chunk is one statement whatever its size); every
session commits with ``synchronous_commit = on``, so a batch is on disk (and on a synchronous
standby, where one is configured) before ``write`` returns and the consumer commits offsets.

Writes run in parallel. A write's first statement (``_RESERVE``) takes a session-level
advisory lock, has the transaction's id (xid) assigned, reserves a block of consecutive seqs
for the batch from the ``seq`` column's sequence, and lets the lock go: one statement, so the
lock is held for microseconds of server time, never across a round trip or a client that
froze. The rows are then inserted with those seqs (in the batch's order) and with the xid in
column ``tx``, holding no lock of Backlight's. Because xid and seqs are taken together under
the lock, for any two writes the one with the lower seqs has the lower xid. Rows are inserted
sorted by event_id, so two writes overlapping in event ids (a replay during a rebalance) wait
on the unique index in one order and cannot deadlock; a deadlock or serialization failure,
should one happen anyway, is a transient ``StoreError`` (retried) like any other.

Followers. Commits no longer come in seq order: seq 11 may be committed while seq 10 is in
flight. So every read that follows the arrival sequence (``since``, ``changed_since``,
``last_seq``) sees only the rows that can no longer be overtaken: those whose ``tx`` is below
the xmin of the statement's snapshot (``_FINAL``; NULL: a row from before version 2, long
committed). The argument: no transaction below xmin is running, so such a row is committed
and visible; and a row with a lower seq belongs to a write with a lower xid, also below xmin,
so it is committed too (or rolled back for good). The rows a follower sees are thus a prefix,
in seq order, of all the rows that will ever be committed: paging by seq skips none. Seqs may
have gaps (duplicates and rolled-back writes use numbers up). The caveat: xmin is the
cluster's oldest running transaction that has an xid, so a long transaction that writes
anything anywhere in the cluster (another database included) holds followers back until it
ends (they see nothing newer meanwhile, and scan past the newer rows on each read). Reads,
which take no xid, do not. Other reads (``events``, ``counts``, ...) see every committed row.

A write's seqs are reserved under the same advisory lock key a Backlight before version 2 of
the schema held (transaction-level) for its whole write, so such a writer still running during
an upgrade excludes the reservations while it writes, and xid order remains seq order.

Reads: ``events`` goes through a server-side cursor, ``READ_CHUNK`` rows at a time, each chunk
a small polars frame; ``since`` pages by seq. Each thread has its own read connection, the
writer its own. A connection the server dropped while idle (a restart, a failover) is
replaced and the call goes on; one dropped during a write fails that write with a
``StoreError`` (the consumer retries the batch) and the next call reconnects.

Errors on a write are either transient (``StoreError``: retried by the consumer) or the
database refusing a row's content (``RowRejected``; ``storage.errors.rejects_rows`` decides).
Every connection sets the limits of ``PostgresSession`` (storage/pg_session.py: lock,
statement and idle-in-transaction timeouts, TCP keepalives), so a writer frozen inside its
transaction holds back only the writes of the same event ids (and the followers) for seconds;
the schema migration at open runs before they apply (it may legitimately take long).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

import polars as pl
import psycopg
from psycopg.conninfo import make_conninfo

from schemas.event import CaseEvent, from_time_us, to_time_us
from schemas.frame import Coordinates
from storage.errors import RowRejected, StoreError, rejects_rows
from storage.events import (
    EVENT_COLUMNS,
    OUT_OF_RANGE,
    READ_CHUNK,
    ProcessCount,
    StoredEvent,
    event_row,
    events_query,
    first_inserted,
    frame_from_rows,
    latest_query,
    stored_event,
)
from storage.migrations import migrate_postgres
from storage.open_cases import OpenCase, open_cases, open_cases_query
from storage.pg_session import PostgresSession
from storage.urls import mask_url, scrub

_T = TypeVar("_T")
CONNECT_TIMEOUT_S = 10
_WRITE_LOCK = 0x6576656E7473  # "events": the advisory lock a write holds to take its xid and seqs
_ROWS_PER_INSERT = 10_000
_TYPES = ("bigint", "text", "text", "text", "text", "bigint", "text", "text", "text", "text",
          "text", "integer", "bigint")
_COLUMNS = ", ".join(f'"{c}"' for c in ("seq", *EVENT_COLUMNS))
_INSERT = (
    f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM unnest("  # noqa: S608 (constants)
    + ", ".join(f"%b::{t}[]" for t in _TYPES)
    + f") WITH ORDINALITY AS batch({_COLUMNS}, n) ORDER BY n"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_RESERVE = (
    # Nested so that each step runs once the one inside it has given its row: take the lock;
    # have the xid assigned and move the sequence past a block of n seqs; let the lock go.
    # (r.tx is selected, else the planner would drop the xid's assignment from the plan.)
    "SELECT pg_advisory_unlock(%(lock)s), r.tx::text, r.last FROM ("
    " SELECT pg_current_xact_id() AS tx,"
    "  setval(%(seqs)s::regclass, nextval(%(seqs)s::regclass) + %(n)s - 1) AS last"
    " FROM (SELECT pg_advisory_lock(%(lock)s) OFFSET 0) AS l OFFSET 0) AS r"
)
_FINAL = "(tx IS NULL OR tx < (SELECT pg_snapshot_xmin(pg_current_snapshot())))"
"""The rows no write in flight can overtake any more (see the module's docstring)."""
_SINCE = (
    "SELECT seq, event_id, process, case_id, activity, time_us, lifecycle, resource, team,"  # noqa: S608
    f' attributes, topic, partition, "offset" FROM events WHERE seq > %s AND {_FINAL}'
    " ORDER BY seq LIMIT %s"
)
_LAST_SEQ = f"SELECT COALESCE(MAX(seq), 0) FROM events WHERE {_FINAL}"  # noqa: S608
_CHANGED_SINCE = (
    f"SELECT process, MAX(seq) FROM events WHERE seq > %s AND {_FINAL}"  # noqa: S608
    " GROUP BY process"
)
_SAVE_MARK = (
    "INSERT INTO subscriber_marks (name, seq) VALUES (%s, %s)"
    " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq"
)


def _sort_key(event_id: object) -> str:
    """The order in which a write inserts its rows: by event id (one order for every writer)."""
    return event_id if isinstance(event_id, str) else ""


def describe(exc: psycopg.Error, url: str) -> str:
    """The driver's error in one line without the password, and without the DETAIL that
    would quote a failing row's values (event data stays out of logs)."""
    primary = exc.diag.message_primary if isinstance(exc, psycopg.DatabaseError) else None
    return scrub(primary or str(exc), url)


def connect_postgres(url: str, durable: bool = True, session: PostgresSession | None = None,
                     limits: bool = True) -> psycopg.Connection[Any]:
    """A connection in autocommit mode (transactions are explicit) that commits durably
    (``synchronous_commit`` on, whatever the server's or the database's default), with the
    session's TCP keepalives and, with ``limits``, its timeouts (``apply_limits``)."""
    session = session or PostgresSession()
    conninfo = make_conninfo(url, **session.connect_options())  # they override the URL's
    conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                           application_name="backlight")
    try:
        conn.execute("SET synchronous_commit TO on" if durable else
                     "SET synchronous_commit TO off")
        if limits:
            apply_limits(conn, session)
    except BaseException:
        conn.close()
        raise
    return conn


def apply_limits(conn: psycopg.Connection[Any], session: PostgresSession) -> None:
    """Set the session's timeouts and server-side keepalives on ``conn``."""
    for name, value in session.settings().items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def _encoding_reason(exc: UnicodeEncodeError | OverflowError) -> str:
    """Why the driver could not send a value, without the value."""
    if isinstance(exc, UnicodeEncodeError):
        return f"text the database cannot encode ({exc.reason})"
    return "an integer out of the column's range"


class PostgresStore:
    """The shared store: one PostgreSQL database, any number of writers and readers.
    ``durable=False`` (commits that do not wait for the WAL flush) is for the benchmark's
    comparison only."""

    def __init__(self, url: str, *, durable: bool = True,
                 session: PostgresSession | None = None) -> None:
        self.url = mask_url(url)
        """The store's URL as it may be shown (password masked)."""
        self._url = url
        self._durable = durable
        self._session = session or PostgresSession()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[psycopg.Connection[Any]] = []
        self._readers_lock = threading.Lock()
        try:
            writer = connect_postgres(url, durable, self._session, limits=False)
        except psycopg.Error as exc:
            raise self._error("cannot connect to the PostgreSQL store", exc) from exc
        try:
            migrate_postgres(writer, self.url)
            apply_limits(writer, self._session)
            found = writer.execute("SELECT pg_get_serial_sequence('events', 'seq')").fetchone()
            self._seqs = str(found[0]) if found else ""
            """The sequence the seqs come from (schema-qualified)."""
        except psycopg.Error as exc:
            writer.close()
            raise self._error("cannot upgrade the PostgreSQL store", exc) from exc
        except StoreError:
            writer.close()
            raise
        self._writer: psycopg.Connection[Any] | None = writer

    def _error(self, doing: str, exc: psycopg.Error) -> StoreError:
        return StoreError(f"{doing} at {self.url}: {describe(exc, self._url)}")

    def _writer_conn(self) -> psycopg.Connection[Any]:
        if self._writer is None or self._writer.closed or self._writer.broken:
            if self._writer is not None:
                self._writer.close()
            self._writer = None
            self._writer = connect_postgres(self._url, self._durable, self._session)
        return self._writer

    def _reader(self) -> psycopg.Connection[Any]:
        """This thread's own connection (opened on first use or after it broke)."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            conn = connect_postgres(self._url, self._durable, self._session)
            with self._readers_lock:
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def write(
        self, events: Sequence[CaseEvent], origins: Sequence[Coordinates | None] | None = None
    ) -> list[bool]:
        if not events:
            return []
        if origins is None:
            origins = [None] * len(events)
        rows = [event_row(e, o) for e, o in zip(events, origins, strict=True)]
        with self._write_lock:
            for attempt in (1, 2):
                sent, reserving = False, False
                try:
                    conn = self._writer_conn()
                    with conn.transaction():
                        reserving = True
                        last = self._reserve(conn, len(rows))
                        reserving, sent = False, True
                        inserted = self._insert(conn, rows, last - len(rows) + 1)
                    break
                except (psycopg.Error, UnicodeEncodeError, OverflowError) as exc:
                    if reserving:
                        self._release(self._writer)
                    if rejects_rows(exc):
                        reason = (describe(exc, self._url) if isinstance(exc, psycopg.Error)
                                  else _encoding_reason(exc))
                        raise RowRejected(f"writing {len(rows)} events at {self.url}: the "
                                          f"database refused a row: {reason}", reason) from exc
                    assert isinstance(exc, psycopg.Error)
                    if attempt == 1 and not sent and self._dropped(exc, self._writer):
                        continue  # dropped while idle (a restart, a failover): nothing was sent
                    raise self._error(f"writing {len(rows)} events", exc) from exc
        return first_inserted([e.event_id for e in events], inserted)

    def _reserve(self, conn: psycopg.Connection[Any], n: int) -> int:
        """Assign the transaction's xid and reserve seqs ``last - n + 1 .. last`` for it, in
        one statement under the allocation lock; ``last``."""
        row = conn.execute(_RESERVE, {"lock": _WRITE_LOCK, "seqs": self._seqs, "n": n}).fetchone()
        assert row is not None and row[0], "the allocation lock was not held"
        return int(row[2])

    @staticmethod
    def _insert(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]],
                first: int) -> set[str]:
        """Insert ``rows`` with seqs ``first, first + 1, ...`` in their order, sorted by
        event_id (overlapping writes then wait on each other in one order: no deadlock);
        the event ids stored. A repeated id keeps its first row (the sort is stable)."""
        order = sorted(range(len(rows)), key=lambda i: _sort_key(rows[i][0]))
        inserted: set[str] = set()
        for start in range(0, len(order), _ROWS_PER_INSERT):
            chunk = [(first + i, *rows[i]) for i in order[start:start + _ROWS_PER_INSERT]]
            columns = [list(c) for c in zip(*chunk, strict=True)]
            cursor = conn.execute(_INSERT, columns)
            inserted.update(r[0] for r in cursor.fetchall())
        return inserted

    @staticmethod
    def _release(conn: psycopg.Connection[Any] | None) -> None:
        """After a reservation failed (its transaction rolled back): make sure the session
        does not keep the allocation lock (a cancel could land between lock and unlock)."""
        if conn is None or conn.closed or conn.broken:
            return  # the server releases a lost session's locks
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock_all()")

    @staticmethod
    def _dropped(exc: psycopg.Error, conn: psycopg.Connection[Any] | None) -> bool:
        """Whether ``exc`` is the server having dropped ``conn`` (worth one more try)."""
        return isinstance(exc, psycopg.OperationalError) and conn is not None and conn.broken

    def _read(self, doing: str, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """``work`` on this thread's connection; once more on a new connection when the
        server had dropped the old one (reads have no effect to repeat)."""
        for attempt in (1, 2):
            conn = None
            try:
                conn = self._reader()
                return work(conn)
            except psycopg.Error as exc:
                if attempt == 1 and self._dropped(exc, conn):
                    continue
                raise self._error(doing, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def events(self, process: str, since: datetime | None = None,
               until: datetime | None = None, *,
               cases_since: datetime | None = None) -> pl.DataFrame:
        sql, params = events_query(process, since, until, "%s", cases_since)

        def read(conn: psycopg.Connection[Any]) -> pl.DataFrame:
            with conn.transaction(), conn.cursor(name="backlight_events") as cursor:
                cursor.itersize = READ_CHUNK
                cursor.execute(sql, params)
                return frame_from_rows(iter(lambda: cursor.fetchmany(READ_CHUNK), []))

        return self._read(f"reading {process!r}", read)

    def open_cases(self, process: str, end_activities: Collection[str]) -> list[OpenCase]:
        sql, params = open_cases_query(process, end_activities, "%s")
        return open_cases(self._query(f"reading the open cases of {process!r}", sql,
                                      tuple(params)))

    def _query(self, doing: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._read(doing, lambda conn: conn.execute(sql, params).fetchall())

    def counts(self) -> list[ProcessCount]:
        rows = self._query("counting the events", "SELECT process, COUNT(*),"
                           " COUNT(DISTINCT case_id) FROM events GROUP BY process")
        return sorted((ProcessCount(p, int(n), int(c)) for p, n, c in rows),
                      key=lambda c: c.process)

    def durability(self) -> str:
        """How commits reach the disk, as the store's session reports it."""
        rows = self._query("reading synchronous_commit", "SHOW synchronous_commit")
        return f"synchronous_commit={rows[0][0]}"

    def latest(self, process: str, until: datetime | None = None) -> datetime | None:
        sql, params = latest_query(process, until, "%s")
        rows = self._query(f"reading the latest {process!r} event", sql, tuple(params))
        return None if rows[0][0] is None else from_time_us(int(rows[0][0]))

    def out_of_range(self, process: str, latest: datetime) -> int:
        sql = OUT_OF_RANGE.format(hint="").replace("?", "%s")
        rows = self._query(f"counting the {process!r} events out of range", sql,
                           (process, process, to_time_us(latest)))
        return int(rows[0][0])

    def last_seq(self) -> int:
        rows = self._query("reading the last seq", _LAST_SEQ)
        return int(rows[0][0])

    def changed_since(self, seq: int) -> dict[str, int]:
        rows = self._query(f"reading the processes changed after seq {seq}", _CHANGED_SINCE,
                           (seq,))
        return {str(p): int(m) for p, m in rows}

    def since(self, seq: int, limit: int) -> list[StoredEvent]:
        rows = self._query(f"reading events after seq {seq}", _SINCE, (seq, limit))
        return [stored_event(row) for row in rows]

    def subscriber_mark(self, name: str) -> int | None:
        rows = self._query(f"reading subscriber {name!r}'s mark",
                           "SELECT seq FROM subscriber_marks WHERE name = %s", (name,))
        return int(rows[0][0]) if rows else None

    def save_subscriber_mark(self, name: str, seq: int) -> None:
        # an upsert of the same value: repeating it after a dropped connection is harmless
        self._read(f"saving subscriber {name!r}'s mark",
                   lambda conn: conn.execute(_SAVE_MARK, (name, seq)))

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
