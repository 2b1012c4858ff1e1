"""``backlight doctor``'s look at a store: reachable, schema version, writable, without changing it."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from storage.migrations import POSTGRES, SQLITE, expected, postgres_version, sqlite_version
from storage.urls import mask_url, parse_url


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
        return _inspect_postgres(target)
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


def _inspect_postgres(url: str) -> StoreCheck:
    """``inspect_store`` for PostgreSQL: connect, read the schema version, and try a write in a
    transaction that is rolled back (an empty insert into each table, or creating a table
    where there is no store yet): nothing changes, not even the seq counter."""
    import psycopg  # only where a PostgreSQL store is inspected

    from storage.pg_events import describe

    want, shown = expected(POSTGRES), mask_url(url)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=5,
                               application_name="backlight doctor")
    except psycopg.Error as exc:
        return StoreCheck(False, None, want, False, f"cannot connect to the PostgreSQL store at "
                          f"{shown}: {describe(exc, url)}")
    try:
        found = postgres_version(conn)
        error = None
        try:
            with conn.transaction(force_rollback=True):
                if found is None:
                    conn.execute("CREATE TABLE backlight_write_probe (x integer)")
                else:
                    conn.execute("INSERT INTO events (event_id, process, case_id, activity,"
                                 " time_us, lifecycle) SELECT '', '', '', '', 0, '' WHERE false")
                    conn.execute("INSERT INTO subscriber_marks (name, seq)"
                                 " SELECT '', 0 WHERE false")
            writable = True
        except psycopg.Error as exc:
            writable = False
            error = f"the PostgreSQL store at {shown} is not writable: {describe(exc, url)}"
    except psycopg.Error as exc:
        return StoreCheck(True, None, want, False, f"cannot read the PostgreSQL store at "
                          f"{shown}: {describe(exc, url)}")
    finally:
        conn.close()
    if error is None and found is not None and found > want:
        error = (f"the store at {shown} has schema version {found}, newer than this Backlight "
                 f"knows ({want}): upgrade Backlight")
    return StoreCheck(True, found, want, writable, error)

