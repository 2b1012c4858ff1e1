"""Versioned schemas and the one runner that upgrades a store's tables in place.

A store's database holds several components' tables: the events (here), the alert state
(storage/alert_state.py) and the outbox (storage/outbox.py).
Each component is a ``Schema``: its list of migrations, version 1, 2, ... in order, each a few
SQL statements, per backend. Opening a component applies the steps it lacks, in order, inside
one transaction that also records the new version, so its tables are always at one known
version (a failing step leaves them where they were). A version newer than the code's is
refused with the component's error (``StoreError``, ``AlertStateError``): an old Backlight
never writes to a schema it does not know.

The versions live in one table, ``schema_version`` (one row per component), the same on both
backends, rather than in SQLite's ``PRAGMA user_version``: one integer per file could not say
whose version it is.

Version 0 is a component from before versioning (the tables of version 1, no recorded version):
version 1's statements are all ``IF NOT EXISTS``, so it upgrades in place, rows untouched.

Several processes may open a new store at once: SQLite serialises them on the write lock
(``BEGIN IMMEDIATE``), PostgreSQL on a transaction-level advisory lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.errors import BacklightError
from storage.errors import StoreError
from storage.sqlite import transaction

if TYPE_CHECKING:
    import psycopg

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


@dataclass(frozen=True)
class Schema:
    """One component's tables on one backend: its row in ``schema_version``, how errors name
    it, the table a copy from before versioning already has, its steps, and its error type."""

    component: str
    what: str
    marker: str
    steps: tuple[Migration, ...]
    error: type[BacklightError] = StoreError

    @property
    def latest(self) -> int:
        """The version once every step is applied."""
        return expected(self.steps)


EVENTS_SQLITE = Schema("events", "the store", "events", SQLITE)
EVENTS_POSTGRES = Schema("events", "the store", "events", POSTGRES)


def expected(steps: Sequence[Migration]) -> int:
    """The version a store has once every step is applied."""
    return steps[-1].version if steps else 0


def _pending(found: int, schema: Schema, where: str) -> list[Migration]:
    """The steps a component at version ``found`` lacks; refuses a newer one."""
    versions = [s.version for s in schema.steps]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, not {versions}")
    if found > schema.latest:
        raise schema.error(
            f"{schema.what} (component {schema.component!r}) at {where} has schema version "
            f"{found}, newer than this Backlight knows ({schema.latest}): upgrade Backlight to "
            "use it (it will not downgrade a store)")
    return [s for s in schema.steps if s.version > found]


def sqlite_version(db: sqlite3.Connection, schema: Schema = EVENTS_SQLITE) -> int | None:
    """The component's schema version without changing anything: None where its tables do not
    exist, 0 for tables from before versioning."""
    tables = {row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('schema_version', ?)",
        (schema.marker,))}
    if "schema_version" in tables:
        row = db.execute("SELECT version FROM schema_version WHERE component = ?",
                         (schema.component,)).fetchone()
        if row is not None:
            return int(row[0])
    return 0 if schema.marker in tables else None


def migrate_sqlite(db: sqlite3.Connection, where: str, schema: Schema = EVENTS_SQLITE) -> int:
    """Bring the component's tables up to date in one write transaction; their version.
    Raises ``schema.error`` for a newer version, ``sqlite3.Error`` when a statement fails."""
    with transaction(db):
        found = sqlite_version(db, schema) or 0
        pending = _pending(found, schema, where)
        if pending:
            db.execute(_VERSION_TABLE)
            for step in pending:
                for statement in step.statements:
                    db.execute(statement)
            db.execute(_SAVE_VERSION.format(p="?"), (schema.component, pending[-1].version))
    return max(found, schema.latest)


def postgres_version(conn: psycopg.Connection[Any],
                     schema: Schema = EVENTS_POSTGRES) -> int | None:
    """The component's schema version without changing anything (None: no tables of it;
    0: tables from before versioning). Tables are looked up on the connection's search_path."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL,"
                       " to_regclass(%s) IS NOT NULL", (schema.marker,)).fetchone()
    has_versions, has_marker = bool(row and row[0]), bool(row and row[1])
    if has_versions:
        found = conn.execute("SELECT version FROM schema_version WHERE component = %s",
                             (schema.component,)).fetchone()
        if found is not None:
            return int(found[0])
    return 0 if has_marker else None


def migrate_postgres(conn: psycopg.Connection[Any], where: str,
                     schema: Schema = EVENTS_POSTGRES) -> int:
    """Bring the component's tables up to date in one transaction, holding an advisory lock
    (one key for every component) so concurrent openers take turns; their version. Raises
    ``schema.error`` for a newer version, ``psycopg.Error`` when a statement fails."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        found = postgres_version(conn, schema) or 0
        pending = _pending(found, schema, where)
        if pending:
            conn.execute(_VERSION_TABLE)
            for step in pending:
                for statement in step.statements:
                    conn.execute(statement)
            conn.execute(_SAVE_VERSION.format(p="%s"), (schema.component, pending[-1].version))
    return max(found, schema.latest)
