"""Opening stores: URLs, schema versions and upgrades in place, inspection, masked passwords.

What every backend must do with events is in tests/test_store_contract.py (run on both).
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from pg import fresh_database

from alerts.errors import AlertStateError
from ingest.errors import StoreError
from schemas.event import CaseEvent, to_time_us
from storage import inspect_store, mask_url, open_alert_state, open_outbox, open_store
from storage.alert_state import SCHEMA as ALERT_SCHEMA
from storage.migrations import EVENTS_SQLITE, SQLITE, Migration, migrate_sqlite
from storage.outbox import SCHEMA as OUTBOX_SCHEMA

T0 = to_time_us(datetime(2026, 3, 4, 8, 15, tzinfo=UTC))

# The SQLite schema as it was before versioning (what stores created until now hold).
UNVERSIONED_DDL = """
CREATE TABLE IF NOT EXISTS events (
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
    stored_us  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))
);
CREATE INDEX IF NOT EXISTS events_process_time ON events (process, time_us);
CREATE INDEX IF NOT EXISTS events_process_case ON events (process, case_id, time_us);
CREATE TABLE IF NOT EXISTS subscriber_marks (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
);
"""


def ev(i: int, process: str = "claims", case: str = "c1") -> CaseEvent:
    return CaseEvent(f"e{i}", process, case, f"Step {i}", T0 + i * 60_000_000, "complete",
                     "u-1", "back-office/claims", '{"amount":1}')


def unversioned_store(path: Path) -> None:
    """A store file as the code before versioning left it: its tables, three events, a mark."""
    with sqlite3.connect(path) as db:
        db.executescript(UNVERSIONED_DDL)
        db.executemany(
            "INSERT INTO events (event_id, process, case_id, activity, time_us, lifecycle,"
            ' resource, team, attributes, topic, partition, "offset")'
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(e.event_id, e.process, e.case_id, e.activity, e.time_us, e.lifecycle, e.resource,
              e.team, e.attributes, "t", 0, i) for i, e in enumerate([ev(1), ev(2), ev(3)])])
        db.execute("INSERT INTO subscriber_marks VALUES ('alerts', 2)")
    db.close()


def test_a_store_from_before_versioning_upgrades_in_place(tmp_path: Path) -> None:
    """A store file with the unversioned schema and rows is seen as version 0 and, opened by
    the new code, is upgraded to the current version with its events, seqs and marks intact."""
    path = tmp_path / "old.db"
    unversioned_store(path)
    assert inspect_store(f"sqlite:///{path}").schema_version == 0
    store = open_store(f"sqlite:///{path}")
    assert store.events("claims")["event_id"].to_list() == ["e1", "e2", "e3"]
    assert store.last_seq() == 3 and store.subscriber_mark("alerts") == 2
    assert store.write([ev(3), ev(4)]) == [False, True]
    store.close()
    check = inspect_store(f"sqlite:///{path}")
    assert check.schema_version == check.expected_version == SQLITE[-1].version
    assert check.error is None


def test_alert_tables_from_before_versioning_upgrade_with_the_same_runner(tmp_path: Path) -> None:
    """A file whose alert state and outbox predate versioning keeps its review and queued
    notification, gets a version per component, and a newer alert state is refused."""
    path = tmp_path / "old.db"
    unversioned_store(path)
    with sqlite3.connect(path) as db:
        for statement in (*ALERT_SCHEMA.steps[0].statements, *OUTBOX_SCHEMA.steps[0].statements):
            db.execute(statement)
        db.execute("INSERT INTO process_reviews (process, who, at_us, note)"
                   " VALUES ('claims', 'bob', ?, 'ok')", (T0,))
        db.execute("INSERT INTO outbox (id, channel, process, keys, payload, created_us,"
                   " enqueued_us, next_attempt_us) VALUES ('n1', 'ops', 'claims', '[]', x'7b7d',"
                   " 1, 1, 1)")
    db.close()
    url = f"sqlite:///{path}"
    state, outbox = open_alert_state(url), open_outbox(url)
    try:
        assert [(r.by, r.note) for r in state.reviews("claims")] == [("bob", "ok")]
        assert outbox.counts() == {("ops", "pending"): 1}
    finally:
        state.close()
        outbox.close()
    with sqlite3.connect(path) as db:
        versions = dict(db.execute("SELECT component, version FROM schema_version").fetchall())
        # the events were not opened: their version stays unrecorded (0) until the store is
        assert versions == {"alerts": ALERT_SCHEMA.latest, "outbox": OUTBOX_SCHEMA.latest}
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        assert {"claimed_by", "claimed_until_us"} <= columns
        db.execute("UPDATE schema_version SET version = 7 WHERE component = 'alerts'")
    db.close()
    with pytest.raises(AlertStateError, match=r"'alerts'.*schema version 7, newer than"):
        open_alert_state(url)


def test_inspect_does_not_migrate_or_create(tmp_path: Path) -> None:
    """inspect_store reads a version-0 store without upgrading it, and reports a missing file
    as no store yet (writable where its directory is) without creating it."""
    path = tmp_path / "old.db"
    unversioned_store(path)
    before = path.read_bytes()
    check = inspect_store(f"sqlite:///{path}")
    assert (check.reachable, check.schema_version, check.writable) == (True, 0, True)
    assert path.read_bytes() == before
    missing = tmp_path / "new" / "s.db"
    check = inspect_store(f"sqlite:///{missing}")
    assert (check.reachable, check.schema_version, check.writable, check.error) == (
        True, None, True, None)
    assert not missing.exists() and not missing.parent.exists()


def test_migrations_apply_in_order_and_a_failing_one_changes_nothing(tmp_path: Path) -> None:
    """Steps run in order inside one transaction: a store at version 1 given two more steps,
    the second of which fails, stays at version 1 without the first step's table; given good
    steps it reaches version 3."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    open_store(url).close()
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    add = Migration(2, "a table", ("CREATE TABLE extra (x INTEGER)",))
    broken = Migration(3, "a typo", ("CREATE TABLE extra2 (x INTEGER)", "CREAT INDEX oops"))
    with pytest.raises(sqlite3.OperationalError):
        migrate_sqlite(db, "test", replace(EVENTS_SQLITE, steps=(*SQLITE, add, broken)))
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "extra" not in tables and inspect_store(url).schema_version == 1
    fixed = Migration(3, "an index", ("CREATE INDEX extra_x ON extra (x)",))
    assert migrate_sqlite(db, "test", replace(EVENTS_SQLITE, steps=(*SQLITE, add, fixed))) == 3
    assert inspect_store(url).schema_version == 3
    db.close()
    with pytest.raises(StoreError, match="schema version 3, newer than this Backlight knows"):
        open_store(url)


def test_store_path_with_spaces_and_percent(tmp_path: Path) -> None:
    """A store file whose path has spaces and % signs is read back, and inspected."""
    url = f"sqlite:///{tmp_path / 'my store %20' / 's.db'}"
    store = open_store(url)
    store.write([ev(1)])
    assert store.events("claims").height == 1
    store.close()
    assert inspect_store(url).schema_version == SQLITE[-1].version


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    """Opening a file that is not SQLite raises a StoreError naming the file; inspect_store
    says it cannot be read."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database " * 100)
    with pytest.raises(StoreError, match=r"notes\.txt"):
        open_store(f"sqlite:///{path}")
    check = inspect_store(f"sqlite:///{path}")
    assert check.error is not None and "notes.txt" in check.error and not check.writable


def test_bad_urls_name_the_problem() -> None:
    """Unknown schemes and a sqlite URL without a file get a message saying what to use, with
    no password in it."""
    with pytest.raises(StoreError, match="unknown scheme 'mysql'") as unknown:
        open_store("mysql://app:s3cret@x/y")
    assert "s3cret" not in str(unknown.value)
    with pytest.raises(StoreError, match="names no file"):
        open_store("sqlite://")


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://app:s3cret@db.example:5432/backlight",
     "postgresql://app:***@db.example:5432/backlight"),
    ("postgres://app:p%40ss:w0rd@db/x?sslmode=require", "postgres://app:***@db/x?sslmode=require"),
    ("postgresql://db/x?user=app&password=s3cret", "postgresql://db/x?user=app&password=***"),
    ("postgresql://app@db/x", "postgresql://app@db/x"),
    ("sqlite:///var/lib/backlight.db", "sqlite:///var/lib/backlight.db"),
])
def test_mask_url_hides_only_the_password(url: str, shown: str) -> None:
    """mask_url replaces the password (in the user part or a password= parameter) by ***
    and keeps everything else as it was."""
    assert mask_url(url) == shown


def test_postgres_errors_show_the_url_masked(postgres_url: str) -> None:
    """A PostgreSQL URL with a password that cannot be reached (a wrong port) fails with a
    StoreError, and inspect_store reports it unreachable; neither shows the password."""
    host_port = postgres_url.split("@", 1)[1].split("/", 1)[0]
    wrong = postgres_url.replace(f"postgres@{host_port}", "postgres:Pa55-w0rd@127.0.0.1:1")
    with pytest.raises(StoreError, match="cannot connect") as failed:
        open_store(wrong)
    check = inspect_store(wrong)
    assert (check.reachable, check.writable) == (False, False)
    for text in (str(failed.value), str(check.error)):
        assert "Pa55-w0rd" not in text and "postgresql://postgres:***@127.0.0.1:1/" in text


def test_connections_the_server_drops_are_replaced(postgres_url: str) -> None:
    """When the server drops the store's connections (as in a restart or a failover), reads
    and writes go on over new ones: nothing lost, nothing stored twice."""
    url = fresh_database(postgres_url)
    store = open_store(url)
    assert store.write([ev(1), ev(2)]) == [True, True] and store.last_seq() == 2

    def drop_connections() -> int:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()", (url.rsplit("/", 1)[1],))
            return len(rows.fetchall())

    assert drop_connections() > 0
    assert store.write([ev(2), ev(3)]) == [False, True]
    assert drop_connections() > 0
    assert [c.events for c in store.counts()] == [3]
    assert store.events("claims")["event_id"].to_list() == ["e1", "e2", "e3"]
    store.close()
