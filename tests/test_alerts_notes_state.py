"""Who owns the fix, what is done and the notes on an alert, kept in the alert state on both
backends (a real SQLite file, a real PostgreSQL database), and a store from before they
existed upgraded in place."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pg import fresh_database

from alerts.errors import AlertStateError
from schemas.alerts import (
    Acknowledgement,
    Alert,
    AlertChange,
    AlertNote,
    Change,
    Finding,
    Severity,
    Status,
)
from storage import open_alert_state
from storage.alert_state import SCHEMA, alert_from_json
from storage.alert_tables import StoredAlertState
from storage.tables import SQLiteTables

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL of each backend (a new SQLite file; a new PostgreSQL database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


def alert(subject: str = "Risk review", status: Status = Status.FIRING, **state: object) -> Alert:
    """A bottleneck alert on claims."""
    finding = Finding(rule="bottleneck", process="claims", subject=subject,
                      severity=Severity.WARNING, summary=f"Waits before {subject} up 3x")
    return Alert.from_finding(finding, status, "claims-lead", T0, fired_at=T0, **state)


def test_a_recurred_confirmed_alert_round_trips_and_old_rows_still_read() -> None:
    """fix_owner, action, confirmed_at, recurrences and previous come back from JSON; a body
    stored before they existed reads with their defaults."""
    full = alert(status=Status.CONFIRMED, fix_owner="clm-ops", action="second assessor",
                 resolved_at=T0 + DAY, confirmed_at=T0 + 8 * DAY, recurrences=2,
                 previous={"first_seen": T0.isoformat(), "fix_owner": "ann", "action": None})
    assert alert_from_json(full.to_json()) == full
    old = {k: v for k, v in full.to_json().items()
           if k not in ("fix_owner", "action", "confirmed_at", "recurrences", "previous")}
    back = alert_from_json({**old, "status": "resolved"})
    assert (back.fix_owner, back.action, back.confirmed_at, back.recurrences, back.previous) == (
        None, None, None, 0, None)


def test_acknowledgements_keep_owner_and_action_and_notes_keep_their_history(url: str) -> None:
    """An acknowledgement's owner and action come back; notes are listed oldest first per
    key, their NOTE change is in the history with the note's text; a resolved, confirmed or
    unknown alert takes no note; a recurrence counts as the alert firing again."""
    state = open_alert_state(url)
    try:
        firing = alert()
        state.save([firing, alert("Done", Status.RESOLVED), alert("Held", Status.CONFIRMED)])
        ack = Acknowledgement(firing.key, "ann", T0 + DAY, "", owner="clm-ops",
                              action="second assessor")
        state.acknowledge(ack)
        assert state.acknowledgements() == {firing.key: ack}
        first = AlertNote(firing.key, "ann", T0 + 2 * DAY, "assessor starts Monday")
        second = AlertNote(firing.key, "bo", T0 + 3 * DAY, "backlog down to 12 <b>cases</b>")
        state.add_note(first, AlertChange(Change.NOTE, firing, first.at, "t1", note=first))
        state.add_note(second)
        assert state.notes(firing.key) == [first, second] == state.notes()
        history = state.history(firing.key)
        assert [(c.change, c.note) for c in history] == [(Change.NOTE, first)]
        for key, why in ((alert("Done").key, "resolved"), (alert("Held").key, "confirmed"),
                         ("bottleneck/claims/Nope", "no alert")):
            with pytest.raises(AlertStateError, match=why):
                state.add_note(dataclasses.replace(first, key=key))
        assert len(state.notes()) == 2
        state.record_changes([AlertChange(Change.FIRING, firing, T0),
                              AlertChange(Change.RECURRED, firing, T0 + 9 * DAY)])
        assert state.fired() == {("claims", "bottleneck"): 2}  # a recurrence fires again
    finally:
        state.close()


def test_a_store_from_before_notes_upgrades_in_place(tmp_path: Path) -> None:
    """A SQLite store at alert-state version 2, with an acknowledgement in it, opens at the
    latest version: the old acknowledgement reads with no owner (its author owns the fix) and
    no action, and notes can be added."""
    path = tmp_path / "old.db"
    old = StoredAlertState(SQLiteTables(path, dataclasses.replace(SCHEMA, steps=SCHEMA.steps[:2])))
    firing = alert()
    old.save([firing])
    old.tables.write("an acknowledgement as version 2 stored it", lambda run: run.count(
        "INSERT INTO alert_acks (key, who, at_us, note) VALUES (?,?,?,?)",
        (firing.key, "ann", 1_772_442_000_000_000, "on it")))
    old.close()
    state = open_alert_state(f"sqlite:///{path}")
    try:
        ack = state.acknowledgements()[firing.key]
        assert (ack.by, ack.owner, ack.action, ack.fix_owner, ack.note) == (
            "ann", None, "", "ann", "on it")
        state.add_note(AlertNote(firing.key, "ann", T0 + DAY, "started"))
        assert [n.text for n in state.notes(firing.key)] == ["started"]
    finally:
        state.close()
