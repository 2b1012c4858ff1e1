"""What the PostgreSQL alert state and outbox share: one connection per object (autocommit,
explicit transactions, ``synchronous_commit`` on, like the event store's, storage/pg_events.py),
a lock so threads take turns on it, errors without the password, and versioned schemas.

Each component (``alerts``, ``outbox``) is a ``Schema`` of storage/migrations.py, versioned and
upgraded in place by its one runner, as the event store's tables are.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from storage.errors import AlertStateError
from storage.migrations import Schema, migrate_postgres
from storage.pg_events import apply_limits, connect_postgres, describe
from storage.pg_session import PostgresSession
from storage.urls import mask_url

_T = TypeVar("_T")


class PgTables:
    """One connection to the store's database with the component's tables migrated."""

    schema: Schema
    """The component's tables and their migrations (storage/migrations.py runs them)."""

    def __init__(self, url: str, session: PostgresSession | None = None) -> None:
        self.url = mask_url(url)
        """The database's URL as it may be shown (password masked)."""
        self._url = url
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._session = session or PostgresSession()
        """The ``[store]`` limits every connection sets (the defaults when none is given),
        applied once the tables are migrated (a migration may legitimately take long)."""
        self._limited = False
        try:
            migrate_postgres(self._connection(), self.url, self.schema)
            apply_limits(self._connection(), self._session)
            self._limited = True
        except psycopg.Error as exc:
            self.close()
            raise self._error(f"opening the {self.schema.component} tables", exc) from exc
        except AlertStateError:
            self.close()
            raise

    def _error(self, doing: str, exc: psycopg.Error) -> AlertStateError:
        return AlertStateError(f"{doing} at {self.url} failed: {describe(exc, self._url)}")

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection (a new one when the server dropped the last one)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._conn = connect_postgres(self._url, session=self._session, limits=self._limited)
        return self._conn

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on the connection, other threads waiting their turn."""
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    yield conn
            except psycopg.Error as exc:
                raise self._error(doing, exc) from exc

    def _write(self, doing: str, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        with self._transaction(doing) as conn:
            return work(conn)

    def _read(self, doing: str, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A query's rows; once more on a new connection if the server had dropped the old one."""
        with self._lock:
            for attempt in (1, 2):
                conn = None
                try:
                    conn = self._connection()
                    return conn.execute(sql, args).fetchall()
                except psycopg.Error as exc:
                    dropped = isinstance(exc, psycopg.OperationalError) and conn is not None \
                        and conn.broken
                    if attempt == 1 and dropped:
                        continue
                    raise self._error(doing, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def is_postgres(url: str) -> bool:
    """Whether a store URL names a PostgreSQL database."""
    return url.partition("://")[0] in ("postgresql", "postgres")
