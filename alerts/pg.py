"""What the PostgreSQL alert state and outbox share: one connection per object (autocommit,
explicit transactions, ``synchronous_commit`` on, like the event store's, ingest/postgres.py),
a lock so threads take turns on it, errors without the password, and versioned schemas.

Each component keeps its version in the store's ``schema_version`` table under its own name
(``alerts``, ``outbox``; the event store's is ``events``, ingest/migrations.py); opening
applies the steps it lacks in one transaction under the same advisory lock as the store's
migrations, so several processes opening a new database at once take turns, and a database
whose component version is newer than the code's is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from alerts.errors import AlertStateError
from ingest.migrations import Migration, expected
from ingest.store import mask_url, scrub

_T = TypeVar("_T")
CONNECT_TIMEOUT_S = 10
MIGRATION_LOCK = 0x6261636B6C696768
"""The advisory lock key of ingest/migrations.py: every component's migrations take turns."""


def describe(exc: psycopg.Error, url: str) -> str:
    """The driver's error in one line, without the password or a DETAIL quoting row values."""
    primary = exc.diag.message_primary if isinstance(exc, psycopg.DatabaseError) else None
    return scrub(primary or str(exc), url)


def component_version(conn: psycopg.Connection[Any], component: str) -> int:
    """The component's recorded schema version (0: none recorded yet)."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return 0
    found = conn.execute("SELECT version FROM schema_version WHERE component = %s",
                         (component,)).fetchone()
    return int(found[0]) if found else 0


def migrate(conn: psycopg.Connection[Any], component: str, steps: Sequence[Migration],
            where: str) -> int:
    """Apply the component's missing steps in one transaction; its version afterwards."""
    versions = [s.version for s in steps]
    if versions != list(range(1, len(steps) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, not {versions}")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        found = component_version(conn, component)
        if found > expected(steps):
            raise AlertStateError(
                f"the {component} tables at {where} have schema version {found}, newer than "
                f"this Backlight knows ({expected(steps)}): upgrade Backlight")
        pending = [s for s in steps if s.version > found]
        if pending:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                         " component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            for step in pending:
                for statement in step.statements:
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version (component, version) VALUES (%s, %s)"
                         " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                         (component, pending[-1].version))
    return max(found, expected(steps))


class PgTables:
    """One connection to the store's database with the component's tables migrated."""

    component = ""
    steps: Sequence[Migration] = ()

    def __init__(self, url: str) -> None:
        self.url = mask_url(url)
        """The database's URL as it may be shown (password masked)."""
        self._url = url
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        try:
            migrate(self._connection(), self.component, self.steps, self.url)
        except psycopg.Error as exc:
            self.close()
            raise self._error(f"opening the {self.component} tables", exc) from exc
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
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                   application_name="backlight")
            try:
                conn.execute("SET synchronous_commit TO on")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
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
