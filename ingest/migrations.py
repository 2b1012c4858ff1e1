"""The event store's schema, versioned, and the upgrades that bring an existing store up to date.

Each backend has its list of migrations, version 1, 2, ... in order; each is a few SQL
statements. Opening a store applies the ones it lacks, in order, inside one transaction that
also records the new version, so a store is always at one known version (a failing step
leaves it where it was). A store whose version is newer than the code's is refused with a
``StoreError``: an old Backlight never writes to a schema it does not know.

The version lives in a table, ``schema_version`` (one row per component; the event store is
``events``), the same on both backends, rather than in SQLite's ``PRAGMA user_version``: the
SQLite file is shared with the alert state and the outbox (alerts/state.py, alerts/outbox.py),
and one integer per file could not say whose version it is.

Version 0 is a store from before versioning (the tables of version 1, no ``schema_version``):
version 1's statements are all ``IF NOT EXISTS``, so it upgrades in place, rows untouched.

Several processes may open a new store at once: SQLite serialises them on the write lock
(``BEGIN IMMEDIATE``), PostgreSQL on a transaction-level advisory lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingest.errors import StoreError
from ingest.sqlite import transaction

if TYPE_CHECKING:
    import psycopg

COMPONENT = "events"
"""The row of ``schema_version`` that holds the event store's version."""
_MIGRATION_LOCK = 0x6261636B6C696768  # "backligh": the advisory lock key of PostgreSQL migrations


@dataclass(frozen=True)
class Migration:
    """One step of the schema: the version it brings the store to and its statements."""

    version: int
    does: str
    statements: tuple[str, ...]


_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)
_SAVE_VERSION = (
    "INSERT INTO schema_version (component, version) VALUES ({p}, {p})"
    " ON CONFLICT (component) DO UPDATE SET version = excluded.version"
)

SQLITE: tuple[Migration, ...] = (
    Migration(1, "events with arrival seq, unique event_id, per-process indexes; subscriber marks", (
        """CREATE TABLE IF NOT EXISTS events (
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
            stored_us  INTEGER NOT NULL DEFAULT
                (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)))""",
        "CREATE INDEX IF NOT EXISTS events_process_time ON events (process, time_us)",
        "CREATE INDEX IF NOT EXISTS events_process_case ON events (process, case_id, time_us)",
        "CREATE TABLE IF NOT EXISTS subscriber_marks (name TEXT PRIMARY KEY, seq INTEGER NOT NULL)",
    )),
)

POSTGRES: tuple[Migration, ...] = (
    Migration(1, "events with arrival seq, unique event_id, per-process indexes; subscriber marks", (
        """CREATE TABLE IF NOT EXISTS events (
            seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id   TEXT NOT NULL UNIQUE,
            process    TEXT NOT NULL,
            case_id    TEXT NOT NULL,
            activity   TEXT NOT NULL,
            time_us    BIGINT NOT NULL,
            lifecycle  TEXT NOT NULL,
            resource   TEXT,
            team       TEXT,
            attributes TEXT,
            topic      TEXT,
            partition  INTEGER,
            "offset"   BIGINT,
            stored_us  BIGINT NOT NULL DEFAULT
                (floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint))""",
        "CREATE INDEX IF NOT EXISTS events_process_time ON events (process, time_us)",
        "CREATE INDEX IF NOT EXISTS events_process_case ON events (process, case_id, time_us)",
        "CREATE TABLE IF NOT EXISTS subscriber_marks (name TEXT PRIMARY KEY, seq BIGINT NOT NULL)",
    )),
)


def expected(steps: Sequence[Migration]) -> int:
    """The version a store has once every step is applied."""
    return steps[-1].version if steps else 0


def check_known(found: int, steps: Sequence[Migration], where: str) -> None:
    """Refuse a store whose schema is newer than these steps know."""
    if found > expected(steps):
        raise StoreError(
            f"the store at {where} has schema version {found}, newer than this Backlight knows "
            f"({expected(steps)}): upgrade Backlight to use it (it will not downgrade a store)")


def _pending(found: int, steps: Sequence[Migration]) -> list[Migration]:
    versions = [s.version for s in steps]
    if versions != list(range(1, len(steps) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, not {versions}")
    return [s for s in steps if s.version > found]


def sqlite_version(db: sqlite3.Connection) -> int | None:
    """The store's schema version without changing anything: None for a file without the
    store's tables, 0 for a store from before versioning."""
    tables = {row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        " AND name IN ('schema_version', 'events')")}
    if "schema_version" in tables:
        row = db.execute("SELECT version FROM schema_version WHERE component = ?",
                         (COMPONENT,)).fetchone()
        if row is not None:
            return int(row[0])
    return 0 if "events" in tables else None


def migrate_sqlite(db: sqlite3.Connection, where: str,
                   steps: Sequence[Migration] = SQLITE) -> int:
    """Bring the SQLite store up to the latest version in one write transaction; its version.
    Raises ``StoreError`` for a newer store, ``sqlite3.Error`` when a statement fails."""
    with transaction(db):
        found = sqlite_version(db) or 0
        check_known(found, steps, where)
        pending = _pending(found, steps)
        if pending:
            db.execute(_VERSION_TABLE)
            for step in pending:
                for statement in step.statements:
                    db.execute(statement)
            db.execute(_SAVE_VERSION.format(p="?"), (COMPONENT, pending[-1].version))
    return max(found, expected(steps))


def postgres_version(conn: psycopg.Connection[Any]) -> int | None:
    """The PostgreSQL store's schema version without changing anything (None: no store tables;
    0: a store from before versioning). Tables are looked up on the connection's search_path."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL,"
                       " to_regclass('events') IS NOT NULL").fetchone()
    has_versions, has_events = bool(row and row[0]), bool(row and row[1])
    if has_versions:
        found = conn.execute("SELECT version FROM schema_version WHERE component = %s",
                             (COMPONENT,)).fetchone()
        if found is not None:
            return int(found[0])
    return 0 if has_events else None


def migrate_postgres(conn: psycopg.Connection[Any], where: str,
                     steps: Sequence[Migration] = POSTGRES) -> int:
    """Bring the PostgreSQL store up to the latest version in one transaction, holding an
    advisory lock so concurrent openers take turns; its version. Raises ``StoreError`` for a
    newer store, ``psycopg.Error`` when a statement fails."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        found = postgres_version(conn) or 0
        check_known(found, steps, where)
        pending = _pending(found, steps)
        if pending:
            conn.execute(_VERSION_TABLE)
            for step in pending:
                for statement in step.statements:
                    conn.execute(statement)
            conn.execute(_SAVE_VERSION.format(p="%s"),
                         (COMPONENT, pending[-1].version))
    return max(found, expected(steps))
