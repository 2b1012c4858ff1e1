"""A component's tables in the PostgreSQL store's database (the ``Tables`` of storage/tables.py):
one connection per object (autocommit, explicit transactions, ``synchronous_commit`` on, with
the ``[store]`` session limits, like the event store's, storage/pg_events.py), a lock so
threads take turns on it, errors without the password, and the component's versioned schema
(storage/migrations.py) applied when opened. Statements are written with ``?`` placeholders
and handed to psycopg with its own."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from storage.migrations import Schema, migrate_postgres
from storage.pg_events import apply_limits, connect_postgres, describe
from storage.pg_session import PostgresSession
from storage.tables import POSTGRES, Rows, Run, Tables
from storage.urls import mask_url

_T = TypeVar("_T")


@functools.lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    """A statement written with ``?`` placeholders in psycopg's (a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgRun:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def rows(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        cursor = self._conn.execute(_pg(sql), tuple(args))
        return cursor.fetchall() if cursor.description else []

    def count(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._conn.execute(_pg(sql), tuple(args)).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(_pg(sql), rows)


class PostgresTables(Tables):
    """One connection to the store's database with the component's tables migrated."""

    dialect = POSTGRES

    def __init__(self, url: str, schema: Schema, session: PostgresSession | None = None) -> None:
        self.url = self.where = mask_url(url)
        self._url = url
        self._schema = schema
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._session = session or PostgresSession()
        """The ``[store]`` limits every connection sets (the defaults when none is given),
        applied once the tables are migrated (a migration may legitimately take long)."""
        self._limited = False
        try:
            migrate_postgres(self._connection(), self.url, schema)
            apply_limits(self._connection(), self._session)
            self._limited = True
        except psycopg.Error as exc:
            self.close()
            raise self._error(f"opening the {schema.component} tables", exc) from exc
        except BaseException:
            self.close()
            raise

    def _error(self, doing: str, exc: psycopg.Error) -> Exception:
        return self._schema.error(f"{doing} at {self.url} failed: {describe(exc, self._url)}")

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection (a new one when the server dropped the last one)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._conn = connect_postgres(self._url, session=self._session, limits=self._limited)
        return self._conn

    def write(self, doing: str, work: Callable[[Run], _T]) -> _T:
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    return work(_PgRun(conn))
            except psycopg.Error as exc:
                raise self._error(doing, exc) from exc

    def read(self, doing: str, sql: str, args: Sequence[Any] = ()) -> Rows:
        """A query's rows; once more on a new connection if the server had dropped the old one."""
        with self._lock:
            for attempt in (1, 2):
                conn = None
                try:
                    conn = self._connection()
                    return conn.execute(_pg(sql), tuple(args)).fetchall()
                except psycopg.Error as exc:
                    dropped = isinstance(exc, psycopg.OperationalError) and conn is not None \
                        and conn.broken
                    if attempt == 1 and dropped:
                        continue
                    raise self._error(doing, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
