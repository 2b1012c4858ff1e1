"""Accepting an alert's new level as normal through the CLI, the API and the web form, recorded
in real SQLite and PostgreSQL; the next evaluation resolves it with one ACCEPTED change."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import backlight
from pg import fresh_database
from web_support import WRITER_TOKEN, web_settings

from alerts.errors import AlertError
from backlight import alerting
from backlight.config import ConfigError, Settings
from backlight.web.forms import q
from backlight.web.server import running
from schemas.alerts import Alert, Change, Severity, Status
from storage import SQLiteStore, open_alert_state

WRITE = {"Authorization": f"Bearer {WRITER_TOKEN}"}
KEYS = ("rework/claims/loop a->b", "rework/claims/loop c->d", "rework/claims/loop e->f")
FIRED = datetime.now(UTC) - timedelta(days=3)


def _alert(key: str) -> Alert:
    return Alert(key=key, rule="rework", process="claims", subject=key.split("/", 2)[2],
                 severity=Severity.WARNING, status=Status.FIRING, summary="loop <grew>",
                 evidence={}, segment={}, since=FIRED.date(), cases=(), owner=None,
                 first_seen=FIRED, last_seen=FIRED, fired_at=FIRED, notified_at=FIRED,
                 notified_severity=Severity.WARNING, baseline_until=FIRED)


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """An empty store (SQLite file or fresh PostgreSQL database) holding three firing alerts."""
    db = tmp_path / "store.db"
    SQLiteStore(db).close()
    base = web_settings(db)
    if request.param == "postgres":
        url = fresh_database(request.getfixturevalue("postgres_url"))
        base = base.model_copy(update={"store": base.store.model_copy(update={"url": url})})
    state = open_alert_state(base.store.url)
    try:
        state.save([_alert(k) for k in KEYS])
    finally:
        state.close()
    yield base


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def test_accept_through_cli_api_and_form_resolves_each_once(settings: Settings,
                                                            tmp_path: Path) -> None:
    """One alert accepted from the CLI, one through the API, one through the /alerts form: each
    acceptance is stored with who and why, the next evaluation resolves all three as accepted
    with one ACCEPTED change each, and the one after sends nothing more."""
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[store]\nurl = "{settings.store.url}"\n')
    out = backlight("alerts", "accept", KEYS[0], "--config", str(cfg), "--by", "ann",
                    "--why", "new supplier, slower by design")
    assert out.stdout.startswith(f"accepted {KEYS[0]} as normal by ann")
    with running(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        r = http.post(f"/api/alerts/{KEYS[1]}/accept", headers=WRITE, json={"why": "expected"})
        assert r.status_code == 201, r.text
        assert (r.json()["by"], r.json()["why"]) == ("alice", "expected")
        assert http.post(f"/api/alerts/{KEYS[1]}/accept", json={"why": "x"}).status_code in (401, 403)
        login = http.get("/login")
        http.post("/login", data={"csrf_token": _csrf(login.text), "token": WRITER_TOKEN,
                                  "next": "/"})
        page = http.get("/alerts")
        assert f"/alerts/{q(KEYS[2])}/accept" in page.text
        r = http.post(f"/alerts/{KEYS[2]}/accept",
                      data={"csrf_token": _csrf(page.text), "why": "<b>seasonal</b>"})
        assert (r.status_code, r.headers["location"]) == (303, "/alerts?done=accepted")
        shown = http.get("/alerts").text
        assert "Accepted as normal by <strong>alice</strong>" in shown
        assert "&lt;b&gt;seasonal&lt;/b&gt;" in shown
    state = open_alert_state(settings.store.url)
    try:
        given = state.acceptances()
    finally:
        state.close()
    assert {k: (a.by, a.why) for k, a in given.items()} == {
        KEYS[0]: ("ann", "new supplier, slower by design"), KEYS[1]: ("alice", "expected"),
        KEYS[2]: ("alice", "<b>seasonal</b>")}
    report = alerting.evaluate(settings, datetime.now(UTC) + timedelta(minutes=1))
    assert sorted((c.change, c.alert.key) for c in report.changes if c.alert.rule == "rework") == [
        (Change.ACCEPTED, k) for k in KEYS]
    state = open_alert_state(settings.store.url)
    try:
        stored = state.alerts()
        history = state.history(KEYS[0])
    finally:
        state.close()
    assert all(stored[k].status is Status.RESOLVED and stored[k].accepted_at for k in KEYS)
    assert stored[KEYS[0]].accepted_by == "ann"
    assert [c.change for c in history] == [Change.ACCEPTED]
    again = alerting.evaluate(settings, datetime.now(UTC) + timedelta(minutes=2))
    assert not [c for c in again.changes if c.alert.rule == "rework"]
    refused = backlight("alerts", "accept", KEYS[0], "--config", str(cfg), "--by", "ann",
                        "--why", "again", check=False)
    assert refused.returncode == 1 and "resolved" in refused.stderr


def test_accept_refused_for_a_rule_without_baseline(settings: Settings) -> None:
    """A stuck-cases alert has no level to accept as normal: accepting it is refused with the
    rule named, and nothing is recorded."""
    key = "stuck/claims/Assessment"
    state = open_alert_state(settings.store.url)
    try:
        state.save([dataclasses.replace(_alert(key), rule="stuck", subject="Assessment")])
    finally:
        state.close()
    with pytest.raises(AlertError, match="rule 'stuck' has no baseline"):
        alerting.accept(settings, key, "ann", "it is normal")
    state = open_alert_state(settings.store.url)
    try:
        assert state.acceptances() == {}
    finally:
        state.close()


@pytest.mark.parametrize("text", ["fixed\x00", "x" * (alerting.TYPED_MAX + 1)])
def test_typed_text_with_a_nul_or_too_long_is_refused_naming_the_option(settings: Settings,
                                                                         text: str) -> None:
    """A reason, note or action with a NUL (PostgreSQL's text cannot hold one) or longer than
    the forms allow is refused before anything is stored, naming the option; nothing is kept."""
    with pytest.raises(ConfigError, match="--why: "):
        alerting.accept(settings, KEYS[0], "ann", text)
    with pytest.raises(ConfigError, match="--text: "):
        alerting.add_note(settings, KEYS[0], "ann", text)
    with pytest.raises(ConfigError, match="--action: "):
        alerting.acknowledge(settings, KEYS[0], "ann", "", action=text)
    state = open_alert_state(settings.store.url)
    try:
        assert (state.acceptances(), state.notes(), state.acknowledgements()) == ({}, [], {})
    finally:
        state.close()
