"""The alert history's index on time (alert-state migration 5): a store from before it upgrades
in place on a real SQLite file and a real PostgreSQL database, its changes kept and read by
time window."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from act_support import at, history
from pg import fresh_database

from storage import open_alert_state
from storage.alert_state import POSTGRES_SCHEMA, SCHEMA
from storage.alert_tables import StoredAlertState
from storage.tables import SQLiteTables, Tables

_INDEX = {"sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND name = ?",
          "postgresql": "SELECT indexname FROM pg_indexes WHERE indexname = ?"}


def _old_tables(backend: str, url: str) -> Tables:
    """The alert state's tables as version 4 (before the index) made them."""
    if backend == "sqlite":
        return SQLiteTables(Path(url.removeprefix("sqlite:///")),
                            dataclasses.replace(SCHEMA, steps=SCHEMA.steps[:4]))
    from storage.pg_tables import PostgresTables

    return PostgresTables(url, dataclasses.replace(POSTGRES_SCHEMA,
                                                   steps=POSTGRES_SCHEMA.steps[:4]))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_from_before_the_index_upgrades_in_place(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A version-4 store with the scripted history opens at version 5 with the index on
    alert_history (at_us); its changes are all there, the window reads those since Sunday
    in order, and the latest change's sequence number is the count of rows."""
    url = (f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite"
           else fresh_database(request.getfixturevalue("postgres_url")))
    old = StoredAlertState(_old_tables(backend, url))
    old.record_changes(history())
    assert old.tables.read("index", _INDEX[backend], ["alert_history_at"]) == []
    old.close()
    state = open_alert_state(url)
    try:
        assert isinstance(state, StoredAlertState)
        assert len(state.tables.read("index", _INDEX[backend], ["alert_history_at"])) == 1
        version = state.tables.read("version", "SELECT version FROM schema_version"
                                    " WHERE component = ?", ["alerts"])
        assert version == [(len(SCHEMA.steps),)] and len(SCHEMA.steps) >= 5
        assert len(state.changes()) == len(history())
        window = state.changes(since=at(-1))
        assert [c.at for c in window] == [c.at for c in history() if c.at >= at(-1)]
        assert state.last_change() == len(history())
    finally:
        state.close()
