"""storage/tables.py on real SQLite and PostgreSQL: statements written once run the same on both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import fresh_database

from storage import StoreError
from storage.migrations import Migration, Schema
from storage.tables import Run, SQLiteTables, Tables

_STEPS = (Migration(1, "a table of notes", (
    "CREATE TABLE IF NOT EXISTS notes (name TEXT PRIMARY KEY, body TEXT NOT NULL)",)),)
SCHEMA = Schema("notes", "the notes", "notes", _STEPS)


@pytest.fixture(params=["sqlite", "postgresql"])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tables]:
    """A component's tables on each database (PostgreSQL: a fresh database)."""
    if request.param == "sqlite":
        opened: Tables = SQLiteTables(tmp_path / "store.db", SCHEMA)
    else:
        from storage.pg_tables import PostgresTables

        opened = PostgresTables(fresh_database(request.getfixturevalue("postgres_url")), SCHEMA)
    try:
        yield opened
    finally:
        opened.close()


def test_one_statement_text_runs_on_both_databases(tables: Tables) -> None:
    """Rows written with ? placeholders read back through a list parameter, a JSON field and
    a LIKE pattern with a literal %; an upsert counts the rows it changed."""
    sql = tables.dialect
    rows = [("10% off", json.dumps({"kind": "offer"})), ("b", json.dumps({"kind": "note"}))]
    tables.write("adding notes", lambda run: run.many(
        "INSERT INTO notes (name, body) VALUES (?, ?)", rows))
    kinds = tables.read("reading", f"SELECT name, {sql.json_text('body', 'kind')} FROM notes"  # noqa: S608
                        f" WHERE {sql.in_list('name')} ORDER BY name", (sql.listed(["b", "10% off"]),))
    assert kinds == [("10% off", "offer"), ("b", "note")]
    assert tables.read("reading", f"SELECT name FROM notes WHERE {sql.in_list('name')}",  # noqa: S608
                       (sql.listed([]),)) == []
    assert tables.read("reading", "SELECT name FROM notes WHERE name LIKE '10%'") == [("10% off",)]
    changed = tables.write("upserting", lambda run: run.count(
        "INSERT INTO notes (name, body) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", ("b", "{}")))
    assert changed == 0


def test_a_failing_unit_of_work_leaves_nothing_and_names_what_failed(tables: Tables) -> None:
    """An exception inside ``write`` rolls the whole unit back; a database error becomes the
    component's error naming what was being done."""
    def half(run: Run) -> None:
        run.count("INSERT INTO notes (name, body) VALUES (?, ?)", ("a", "{}"))
        raise KeyError("stop")
    with pytest.raises(KeyError):
        tables.write("adding a note", half)
    assert tables.read("reading", "SELECT COUNT(*) FROM notes") == [(0,)]
    with pytest.raises(StoreError, match=r"adding a note .*failed"):
        tables.write("adding a note", lambda run: run.count(
            "INSERT INTO notes (name, body) VALUES (?, NULL)", ("a",)))
    assert tables.read("reading", "SELECT COUNT(*) FROM notes") == [(0,)]
