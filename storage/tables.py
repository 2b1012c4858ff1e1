"""One connection to a component's tables, on SQLite or PostgreSQL, with its queries written once.

A component (the alert state, the outbox) writes its SQL once, with ``?`` placeholders, and
runs it through ``Tables``: ``write`` runs a unit of work in one transaction, ``read`` runs one
query. Where the two dialects disagree, the component asks its ``Dialect`` for the fragment (a
row lock, a list parameter, a JSON field), so no statement is written twice. ``SQLiteTables``
is here; ``PostgresTables`` (storage/pg_tables.py) loads the PostgreSQL driver only where a
``postgresql://`` store is used. Both migrate the component's tables when opened
(storage/migrations.py) and raise the component's error (``Schema.error``), never a driver's,
without the URL's password.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from storage.migrations import Schema, migrate_sqlite
from storage.sqlite import connect, transaction

_T = TypeVar("_T")
Rows = list[tuple[Any, ...]]


@dataclass(frozen=True)
class Dialect:
    """The fragments where SQLite's and PostgreSQL's SQL differ, for statements written once."""

    name: str
    for_update: str
    """Appended to a SELECT whose rows the transaction changes next: PostgreSQL locks them;
    SQLite's write transaction (``BEGIN IMMEDIATE``) already holds the whole file."""
    for_share: str
    """Appended to a SELECT whose rows must not change before the commit."""
    skip_locked: str
    """Appended to a SELECT of rows to claim: rows another transaction is claiming are skipped."""

    def in_list(self, column: str) -> str:
        """``column`` is one of a list given as one parameter (``listed``)."""
        if self.name == "postgresql":
            return f"{column} = ANY(?)"
        return f"{column} IN (SELECT value FROM json_each(?))"  # noqa: S608 (dialect fragments)

    def listed(self, values: Sequence[Any]) -> Any:
        """A list as the one parameter of ``in_list``."""
        return list(values) if self.name == "postgresql" else json.dumps(list(values))

    def json_text(self, column: str, field: str) -> str:
        """A top-level field of a JSON text column, as text."""
        if self.name == "postgresql":
            return f"{column}::jsonb ->> '{field}'"
        return f"json_extract({column}, '$.{field}')"


SQLITE = Dialect("sqlite", for_update="", for_share="", skip_locked="")
POSTGRES = Dialect("postgresql", for_update=" FOR UPDATE", for_share=" FOR SHARE",
                   skip_locked=" FOR UPDATE SKIP LOCKED")


class Run(Protocol):
    """What a unit of work is handed inside its transaction."""

    def rows(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        """The rows of a statement (none for one without a result)."""
        ...

    def count(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a statement; how many rows it changed."""
        ...

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per row of parameters."""
        ...


class Tables(ABC):
    """A component's tables in one database: one connection, threads taking turns on it."""

    dialect: Dialect
    where: str
    """The database as it may be shown (a file, or a URL with its password masked)."""

    @abstractmethod
    def write(self, doing: str, work: Callable[[Run], _T]) -> _T:
        """``work`` in one transaction (committed, or rolled back on any exception); a
        database error becomes the component's error naming what was being ``doing``."""

    @abstractmethod
    def read(self, doing: str, sql: str, args: Sequence[Any] = ()) -> Rows:
        """The rows of one query."""

    @abstractmethod
    def close(self) -> None:
        """Let the connection go."""


class _SQLiteRun:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def rows(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        return self._db.execute(sql, args).fetchall()

    def count(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, args).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)


class SQLiteTables(Tables):
    """A component's tables in a SQLite file (WAL), normally the event store's own file.
    Every write is one ``BEGIN IMMEDIATE`` transaction, so several processes (the consumer,
    ``alerts run``, the CLI, the web) can share the file."""

    dialect = SQLITE

    def __init__(self, path: Path, schema: Schema) -> None:
        self.path = path
        self.where = str(path)
        self._error = schema.error
        self._lock = threading.Lock()
        try:
            self._db = connect(path)
        except (sqlite3.Error, OSError) as exc:
            raise self._error(f"cannot open {schema.what} at {path}: {exc}") from exc
        try:
            # Several processes may open a new file at once: one write transaction migrates.
            migrate_sqlite(self._db, str(path), schema)
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(f"cannot open {schema.what} at {path}: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    def write(self, doing: str, work: Callable[[Run], _T]) -> _T:
        with self._lock:
            try:
                with transaction(self._db):
                    return work(_SQLiteRun(self._db))
            except sqlite3.Error as exc:
                raise self._error(f"{doing} in {self.path} failed: {exc}") from exc

    def read(self, doing: str, sql: str, args: Sequence[Any] = ()) -> Rows:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._error(f"{doing} in {self.path} failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
