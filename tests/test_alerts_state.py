"""The persisted alert state on both backends (a real SQLite file, a real PostgreSQL database):
round trips, restarts, silences, acks."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import sqlite3
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pg import fresh_database

from alerts.errors import AlertStateError
from alerts.lifecycle import LifecyclePolicy, advance
from schemas.alerts import (
    Acknowledgement,
    Alert,
    AlertChange,
    Change,
    Finding,
    Review,
    Severity,
    Silence,
    Status,
)
from storage import StoreError, open_alert_state, open_store
from storage.alert_state import alert_from_json

T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CET = timezone(timedelta(hours=1))
OWNERS = {"claims": "claims-lead@example.com"}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL of each backend (a new SQLite file; a new PostgreSQL database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


def full_alert(key_subject: str = "Assessment", status: Status = Status.FIRING) -> Alert:
    """An alert with every field set, times in a non-UTC zone and microseconds."""
    f = Finding(rule="bottleneck", process="claims", subject=key_subject,
                severity=Severity.CRITICAL, summary="Wait before Assessment: 6.1 business days",
                evidence={"recent": {"median": 6.1, "p90": [7, 15]}, "baseline": 0.8, "cases": 41},
                segment={"region": "east"}, since=date(2026, 10, 19), cases=("c-1", "c-2"))
    at = datetime(2026, 10, 20, 10, 30, 15, 123456, tzinfo=CET)
    return Alert.from_finding(
        f, status, "claims-lead@example.com", at, first_seen=at - DAY, fired_at=at,
        resolved_at=at + DAY, acknowledged_by="alice", acknowledged_at=at + timedelta(hours=2),
        silenced_by="s1", escalated_at=at + 2 * DAY, url="https://b.example/processes/claims",
        notified_at=at, notified_severity=Severity.WARNING, flips=(at - DAY, at), flapping=True)


def finding(subject: str = "Assessment") -> Finding:
    """A bottleneck finding on claims."""
    return Finding(rule="bottleneck", process="claims", subject=subject,
                   severity=Severity.WARNING, summary=f"Wait before {subject}: 6 days")


def test_alert_json_round_trips_exactly(url: str) -> None:
    """An alert read back (from JSON, and from the file after reopening) equals what was saved,
    with enums, dates and aware UTC datetimes."""
    alert = full_alert()
    assert alert_from_json(alert.to_json()) == alert
    state = open_alert_state(url)
    state.save([alert])
    state.close()
    back = open_alert_state(url).alerts()[alert.key]
    assert back == alert
    assert back.severity is Severity.CRITICAL and back.status is Status.FIRING
    assert back.notified_severity is Severity.WARNING and back.since == date(2026, 10, 19)
    assert back.fired_at is not None and back.fired_at.tzinfo == UTC
    assert back.fired_at.microsecond == 123456


def test_an_unreadable_stored_alert_is_an_alert_state_error() -> None:
    """A body missing a field or holding a bad enum is reported, not half-read."""
    body = full_alert().to_json()
    with pytest.raises(AlertStateError, match="stored alert"):
        alert_from_json({**body, "status": "exploded"})
    with pytest.raises(AlertStateError, match="stored alert"):
        alert_from_json({k: v for k, v in body.items() if k != "first_seen"})


def test_save_upserts_and_forgets_pending_alerts_that_were_dropped(url: str) -> None:
    """Saving an evaluation updates alerts in place; a pending alert that the evaluation
    dropped is gone, while alerts left out of the save that are not pending are kept."""
    state = open_alert_state(url)
    firing, pending = full_alert("A"), full_alert("B", Status.PENDING)
    state.save([firing, pending])
    assert set(state.alerts()) == {firing.key, pending.key}
    resolved = replace(firing, status=Status.RESOLVED)
    state.save([resolved])
    assert state.alerts() == {firing.key: resolved}
    state.close()


def test_a_restart_between_evaluations_sends_nothing_twice(url: str) -> None:
    """Evaluate, persist, close; reopen and evaluate again with the same conditions: no change.
    The silence and the acknowledgement recorded before the restart still hold after it."""
    policy = LifecyclePolicy(repeat_interval=3 * DAY, escalate_after=2 * DAY)
    state = open_alert_state(url)
    first = advance(state.alerts(), [finding("A"), finding("B")], now=T0, policy=policy,
                    owners=OWNERS, evaluated={"claims"})
    state.save(first.alerts)
    state.record_changes(first.changes)
    assert [c.change for c in first.changes] == [Change.FIRING, Change.FIRING]
    key_a, key_b = finding("A").key, finding("B").key
    state.add_silence(Silence(id="s1", until=T0 + 30 * DAY, by="bob", why="fix deploying",
                              created_at=T0 + timedelta(hours=1), key=key_a))
    state.acknowledge(Acknowledgement(key_b, "alice", T0 + timedelta(hours=1), "on it"))
    state.close()

    sent: list[AlertChange] = []
    for day in range(1, 10):
        now = T0 + day * DAY
        state = open_alert_state(url)
        result = advance(state.alerts(), [finding("A"), finding("B")], now=now, policy=policy,
                         owners=OWNERS, evaluated={"claims"}, silences=state.silences(now),
                         acks=state.acknowledgements())
        state.save(result.alerts)
        state.record_changes(result.changes)
        sent.extend(result.changes)
        state.close()
    # Day 1 announces the silence and the acknowledgement; then nothing: no repeat, no
    # escalation, no second FIRING, across nine restarts.
    assert [(c.change, c.alert.key, c.at) for c in sent] == [
        (Change.SILENCED, key_a, T0 + DAY), (Change.ACKNOWLEDGED, key_b, T0 + DAY)]
    state = open_alert_state(url)
    assert [s.id for s in state.silences(T0 + 9 * DAY)] == ["s1"]
    assert [c.change for c in state.history(key_b)] == [Change.ACKNOWLEDGED, Change.FIRING]
    state.close()


def test_silences_are_listed_filtered_and_expired(url: str) -> None:
    """Silences come back as recorded; active_at filters by their window; expiring one ends it
    now (and records who), expiring it again changes nothing, an unknown id is named."""
    state = open_alert_state(url)
    early = Silence(id="early", until=T0 + DAY, by="bob", why="deploy", created_at=T0,
                    rule="bottleneck", severity=Severity.WARNING)
    late = Silence(id="late", until=T0 + 5 * DAY, by="carol", why="known",
                   created_at=T0 + 2 * DAY, process="claims")
    state.add_silence(late)
    state.add_silence(early)
    assert state.silences() == [early, late]
    assert state.silences(T0 + timedelta(hours=3)) == [early]
    assert state.silences(T0 + 3 * DAY) == [late]
    assert state.silences(T0 + 5 * DAY) == []
    expired = state.expire_silence("late", "dave", T0 + 3 * DAY)
    assert expired.until == T0 + 3 * DAY
    assert state.silences(T0 + 3 * DAY) == []
    assert state.expire_silence("late", "erin", T0 + 4 * DAY) == expired
    with pytest.raises(AlertStateError, match="'nope'"):
        state.expire_silence("nope", "dave", T0)
    state.close()


def test_bad_silences_are_refused_and_an_empty_id_gets_one(url: str) -> None:
    """A silence needs a matcher, must end after it starts and a fresh id; without an id it
    gets one."""
    state = open_alert_state(url)
    ok = state.add_silence(Silence(id="", until=T0 + DAY, by="b", why="w", created_at=T0,
                                   process="claims"))
    assert ok.id and state.silences() == [ok]
    with pytest.raises(AlertStateError, match="no matcher"):
        state.add_silence(Silence(id="x", until=T0 + DAY, by="b", why="w", created_at=T0))
    with pytest.raises(AlertStateError, match="ends before it starts"):
        state.add_silence(Silence(id="y", until=T0, by="b", why="w", created_at=T0, rule="r"))
    with pytest.raises(AlertStateError, match="already exists"):
        state.add_silence(Silence(id=ok.id, until=T0 + DAY, by="b", why="w", created_at=T0,
                                  rule="r"))
    assert state.silences() == [ok]
    state.close()


def test_acknowledgements_keep_the_latest_per_key_and_refuse_unknown_alerts(url: str) -> None:
    """Acknowledging needs a pending or firing alert; the latest acknowledgement per key wins."""
    state = open_alert_state(url)
    alert = full_alert()
    state.save([alert, full_alert("Done", Status.RESOLVED)])
    state.acknowledge(Acknowledgement(alert.key, "alice", T0 + DAY, "first"))
    state.acknowledge(Acknowledgement(alert.key, "bob", T0 + 2 * DAY, "second"))
    assert state.acknowledgements() == {
        alert.key: Acknowledgement(alert.key, "bob", T0 + 2 * DAY, "second")}
    with pytest.raises(AlertStateError, match="'bottleneck/claims/Nope'"):
        state.acknowledge(Acknowledgement("bottleneck/claims/Nope", "alice", T0))
    with pytest.raises(AlertStateError, match="resolved"):
        state.acknowledge(Acknowledgement(full_alert("Done").key, "alice", T0))
    state.close()


def test_reviews_and_history_come_newest_first(url: str) -> None:
    """Reviews per process and the change history per key are listed newest first."""
    state = open_alert_state(url)
    state.record_review(Review("claims", "alice", T0, "checked"))
    state.record_review(Review("payments", "bob", T0 + DAY))
    state.record_review(Review("claims", "carol", T0 + 2 * DAY, "owner changed"))
    assert [r.by for r in state.reviews()] == ["carol", "bob", "alice"]
    assert state.reviews("claims") == [Review("claims", "carol", T0 + 2 * DAY, "owner changed"),
                                       Review("claims", "alice", T0, "checked")]
    alert = full_alert()
    state.record_changes([AlertChange(Change.FIRING, alert, T0),
                          AlertChange(Change.REPEAT, alert, T0 + DAY)])
    state.record_changes([AlertChange(Change.RESOLVED, full_alert("Other"), T0 + 2 * DAY)])
    assert [c.change for c in state.history()] == [Change.RESOLVED, Change.REPEAT, Change.FIRING]
    assert state.history(alert.key, limit=1) == [AlertChange(Change.REPEAT, alert, T0 + DAY)]
    state.close()


def _open_and_save(url: str, subject: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    state = open_alert_state(url)
    state.save([full_alert(subject)])
    state.close()


def test_processes_opening_a_new_file_at_once_all_work(url: str) -> None:
    """Four processes released together onto a store that has no tables yet (a file that does
    not exist yet; an empty database) each create the tables (or find them) and save their
    alert; all four alerts are there."""
    if url.startswith("sqlite:///"):
        url = url.replace("store.db", "new/store.db")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    workers = [ctx.Process(target=_open_and_save, args=(url, f"S{i}", barrier)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    state = open_alert_state(url)
    assert sorted(a.subject for a in state.alerts().values()) == ["S0", "S1", "S2", "S3"]
    state.close()


def test_the_alert_state_shares_the_event_store_file(url: str) -> None:
    """The alert tables live beside the events in the same file (database), each side
    unaffected."""
    state = open_alert_state(url)
    state.save([full_alert()])
    store = open_store(url)
    assert store.counts() == []
    store.close()
    assert list(state.alerts()) == [full_alert().key]
    state.close()


def test_store_urls_are_dispatched_without_echoing_secrets() -> None:
    """A PostgreSQL URL opens the PostgreSQL state (an unreachable server is an error without
    the password); other schemes are refused as any store URL is (a StoreError, as the event
    store's); no password in any message."""
    with pytest.raises(AlertStateError, match="alerts tables at postgresql://app:\\*\\*\\*@") as pg:
        open_alert_state("postgresql://app:s3cret@127.0.0.1:9/backlight")
    with pytest.raises(StoreError, match="unknown scheme") as other:
        open_alert_state("mysql://app:s3cret@db.example/backlight")
    with pytest.raises(StoreError, match="names no file"):
        open_alert_state("sqlite://")
    assert "s3cret" not in str(pg.value) + str(other.value)


def test_stored_alerts_and_history_are_strict_json_even_with_non_finite_evidence(
        tmp_path: Path) -> None:
    """An alert whose evidence holds Infinity and NaN (a figure from odd data) is stored, and
    recorded in the history, as JSON a strict parser reads: the non-finite figures are null."""
    def refuse(literal: str) -> None:
        raise ValueError(f"not JSON: {literal}")

    alert = replace(full_alert(), evidence={"z": float("inf"), "share": float("nan"), "n": 3})
    url = f"sqlite:///{tmp_path / 'store.db'}"
    state = open_alert_state(url)
    state.save([alert])
    state.record_changes([AlertChange(Change.FIRING, alert, T0, "t")])
    state.close()
    with sqlite3.connect(tmp_path / "store.db") as db:
        bodies = [b for (b,) in db.execute("SELECT body FROM alert_states")]
        bodies += [b for (b,) in db.execute("SELECT body FROM alert_history")]
    assert len(bodies) == 2
    for body in bodies:
        assert json.loads(body, parse_constant=refuse)["evidence"] == {"z": None, "share": None,
                                                                       "n": 3}
