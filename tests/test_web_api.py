"""The JSON API over real HTTP: what it reads agrees with the store and with `backlight mine`,
what it writes are the records the CLI reads back."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from web_support import (
    HOSTILE_PROCESS,
    WRITER_TOKEN,
    evaluate_alerts,
    fill_store,
    review_day,
    web_settings,
)

from backlight import alerting
from backlight.config import Settings
from backlight.mine import mine
from backlight.web.server import running
from storage import open_alert_state, open_store

DEMO = ("onboarding", "payments", "claims")
WRITE = {"Authorization": f"Bearer {WRITER_TOKEN}"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = tmp_path_factory.mktemp("web-api") / "store.db"
    nows = fill_store(path)
    settings = web_settings(path)
    assert evaluate_alerts(settings, nows) > 0
    return settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[httpx.Client]:
    with running(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def alert_key(settings: Settings, rule: str) -> str:
    """The key of a stored alert of ``rule`` (keys hold "/" and spaces)."""
    alerts, _ = alerting.listing(settings)
    return next(a.key for a in alerts if a.rule == rule)


def path_of(key: str) -> str:
    return quote(key, safe="/")


def test_overview_lists_every_process_with_the_store_counts(client: httpx.Client,
                                                            settings: Settings) -> None:
    """GET /api/processes has the three demo processes and the hostile one, counted as stored."""
    response = client.get("/api/processes")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()}
    assert set(DEMO) | {HOSTILE_PROCESS} <= set(rows)
    store = open_store(settings.store.url)
    try:
        counts = {c.process: c for c in store.counts()}
    finally:
        store.close()
    for name, count in counts.items():
        assert rows[name]["events"] == count.events, name
        assert rows[name]["cases"] == count.cases, name
        assert 0 <= rows[name]["open_cases"] <= rows[name]["cases"]
    assert rows["claims"]["open_alerts"].get("warning", 0) >= 1  # its stuck cases fired


def test_process_document_is_the_mine_json(client: httpx.Client, settings: Settings) -> None:
    """GET /api/processes/{name}?window=all is `backlight mine --format json` of the same events."""
    for name in (*DEMO, HOSTILE_PROCESS):
        response = client.get(f"/api/processes/{quote(name)}", params={"window": "all"})
        assert response.status_code == 200
        assert response.json() == json.loads(mine(settings, name, "json").text), name


def test_downloads_are_the_mine_documents(client: httpx.Client, settings: Settings) -> None:
    """model.bpmn and events.xes for window=all are `backlight mine --format bpmn/xes` of the
    same events (the model with its note on what it leaves out), up to the model's generated ids
    and the order of its elements."""
    def ids_out(text: str) -> list[str]:
        return sorted(re.sub(r"id[0-9a-f]{8}-[0-9a-f-]{27}", "id", text).splitlines())

    for fmt, path in (("bpmn", "model.bpmn"), ("xes", "events.xes")):
        response = client.get(f"/api/processes/payments/{path}", params={"window": "all"})
        assert response.status_code == 200
        assert ids_out(response.text) == ids_out(mine(settings, "payments", fmt).text), fmt
    model = client.get("/api/processes/payments/model.bpmn", params={"window": "all"}).text
    assert "Backlight discovered this model" in model


def test_four_week_window_holds_the_cases_completed_in_its_days(client: httpx.Client) -> None:
    """window=4w is the cases completed in the 28 UTC days up to the last completion, with all
    their events: the same cases and events as its figures, each case's last event in those
    days, fewer than the quarter's and all time's."""
    whole = client.get("/api/processes/claims", params={"window": "all"}).json()
    recent = client.get("/api/processes/claims", params={"window": "4w"}).json()
    quarter = client.get("/api/processes/claims", params={"window": "quarter"}).json()
    figures = client.get("/api/processes/claims/figures", params={"window": "4w"}).json()
    assert 0 < recent["events"] < quarter["events"] < whole["events"]
    assert (recent["events"], recent["cases"]) == (figures["events"], figures["cases"])
    start = datetime.fromisoformat(figures["completed_from"])
    assert start <= datetime.fromisoformat(recent["window"]["to"]) < start + timedelta(days=28)
    assert datetime.fromisoformat(recent["window"]["from"]) < start  # earlier events of its cases


def test_cases_in_flight_and_stuck_cases_are_the_same_in_every_window(
        client: httpx.Client) -> None:
    """A case stuck for weeks has no event in the last four: the 4-week and quarter views
    still list every stuck case and count every case in flight, as the whole history does."""
    def claims(window: str) -> dict[str, Any]:
        rows = client.get("/api/processes", params={"window": window}).json()
        return next(r for r in rows if r["name"] == "claims")

    whole = claims("all")
    stuck_all = client.get("/api/processes/claims/stuck", params={"window": "all"}).json()
    assert stuck_all and whole["open_cases"] >= len(stuck_all)
    assert claims("4w")["events"] < whole["events"]
    for window in ("4w", "quarter"):
        part = claims(window)
        assert part["open_cases"] == whole["open_cases"], window
        stuck = client.get("/api/processes/claims/stuck", params={"window": window}).json()
        assert stuck == stuck_all, window


def test_map_is_svg_in_both_views_and_follows_the_thresholds(client: httpx.Client) -> None:
    """map.svg answers image/svg+xml for both views; other thresholds draw another map."""
    maps = {}
    for view in ("frequency", "performance"):
        response = client.get("/api/processes/onboarding/map.svg", params={"view": view})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert response.text.lstrip().startswith(("<svg", "<?xml"))
        maps[view] = response.text
    assert maps["frequency"] != maps["performance"]
    sparse = client.get("/api/processes/onboarding/map.svg",
                        params={"view": "frequency", "activities": 0.3, "paths": 0.0})
    assert sparse.status_code == 200
    assert sparse.text != maps["frequency"]
    assert sparse.text.count("<g") < maps["frequency"].count("<g")


def test_model_and_log_download_as_attachments(client: httpx.Client) -> None:
    """model.bpmn and events.xes come as attachments with a file name of the process."""
    bpmn = client.get("/api/processes/payments/model.bpmn")
    assert bpmn.status_code == 200
    assert bpmn.headers["content-disposition"] == 'attachment; filename="payments.bpmn"'
    assert "definitions" in bpmn.text
    xes = client.get("/api/processes/payments/events.xes", params={"window": "4w"})
    assert xes.status_code == 200
    assert xes.headers["content-disposition"] == 'attachment; filename="payments.xes"'
    assert "<log" in xes.text and "<trace" in xes.text
    for kind in ("model.bpmn", "events.xes"):  # activity names that are HTML tags, too
        hostile = client.get(f"/api/processes/{HOSTILE_PROCESS}/{kind}")
        assert hostile.status_code == 200, hostile.text
        suffix = kind.split(".")[1]
        assert hostile.headers["content-disposition"] == f'attachment; filename="hostile.{suffix}"'
        assert "<script>" not in hostile.text and "&lt;script&gt;" in hostile.text


def test_unknown_process_is_404_and_unknown_window_422(client: httpx.Client) -> None:
    """A process that does not exist is 404 on every read; a window not offered is 422."""
    for suffix in ("", "/map.svg", "/model.bpmn", "/events.xes", "/stuck"):
        assert client.get(f"/api/processes/no-such-process{suffix}").status_code == 404, suffix
    response = client.get("/api/processes/claims", params={"window": "week"})
    assert response.status_code == 422
    assert client.get("/api/processes", params={"window": "1y"}).status_code == 422


def test_stuck_cases_of_claims(client: httpx.Client) -> None:
    """The claims process's stuck cases wait at Assessment, longest first."""
    stuck = client.get("/api/processes/claims/stuck").json()
    assert stuck
    assert {c["step"] for c in stuck} == {"Assessment"}
    idle = [c["idle_days"] for c in stuck]
    assert idle == sorted(idle, reverse=True)


def test_review_records_what_the_cli_reads(client: httpx.Client, settings: Settings) -> None:
    """POST review with the writer's token records a review by alice, as `backlight review`."""
    response = client.post("/api/processes/payments/review", headers=WRITE,
                           json={"note": "checked the SLA"})
    assert response.status_code == 201
    body = response.json()
    assert body["by"] == "alice" and body["process"] == "payments"
    state = open_alert_state(settings.store.url)
    try:
        latest = state.reviews("payments")[0]
    finally:
        state.close()
    assert (latest.by, latest.note) == ("alice", "checked the SLA")
    assert latest.at == datetime.fromisoformat(body["at"])
    row = next(r for r in client.get("/api/processes").json() if r["name"] == "payments")
    assert row["reviewed_by"] == "alice"
    assert row["last_reviewed"] == review_day(settings, "payments", latest.at)


def test_acknowledge_records_what_the_cli_reads(client: httpx.Client, settings: Settings) -> None:
    """POST ack on an alert whose key holds "/" and spaces marks it acknowledged by alice,
    the fix owned by the team she names, with the action she gives; a note on it is recorded
    by alice and listed in its history."""
    key = alert_key(settings, "stuck")
    response = client.post(f"/api/alerts/{path_of(key)}/ack", headers=WRITE,
                           json={"note": "on it", "owner": "clm-ops", "action": "chase <b>"})
    assert response.status_code == 201
    assert (response.json()["key"], response.json()["owner"]) == (key, "clm-ops")
    noted = client.post(f"/api/alerts/{path_of(key)}/note", headers=WRITE,
                        json={"text": "two cases closed"})
    assert noted.status_code == 201 and noted.json()["by"] == "alice"
    assert client.post(f"/api/alerts/{path_of(key)}/note", headers=WRITE,
                       json={"text": ""}).status_code == 422
    state = open_alert_state(settings.store.url)
    try:
        ack = state.acknowledgements()[key]
        notes = state.notes(key)
    finally:
        state.close()
    assert (ack.by, ack.note, ack.fix_owner, ack.action) == ("alice", "on it", "clm-ops", "chase <b>")
    assert [(n.by, n.text) for n in notes] == [("alice", "two cases closed")]
    listed = next(a for a in client.get("/api/alerts").json() if a["key"] == key)
    assert (listed["acknowledged_by"], listed["fix_owner"], listed["action"]) == (
        "alice", "clm-ops", "chase <b>")
    history = client.get(f"/api/alerts/{path_of(key)}/history").json()
    assert history[0]["change"] == "note" and history[0]["note"] == {
        "by": "alice", "text": "two cases closed"}


def test_silence_records_what_the_cli_reads(client: httpx.Client, settings: Settings) -> None:
    """POST silence records a silence of that key until the given time, by alice, with the why."""
    key = alert_key(settings, "stale_review")
    until = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    response = client.post(f"/api/alerts/{path_of(key)}/silence", headers=WRITE,
                           json={"until": until.isoformat(), "why": "review booked"})
    assert response.status_code == 201
    _, silences = alerting.listing(settings)
    mine_ = [s for s in silences if s.id == response.json()["id"]]
    assert len(mine_) == 1
    assert (mine_[0].key, mine_[0].by, mine_[0].why) == (key, "alice", "review booked")
    assert mine_[0].until == until
    listed = client.get("/api/silences").json()
    assert any(s["id"] == mine_[0].id and s["by"] == "alice" for s in listed)
    alert = next(a for a in client.get("/api/alerts").json() if a["key"] == key)
    assert alert["silenced"] is True and alert["silenced_by"] == mine_[0].id


def test_silence_until_the_past_is_refused(client: httpx.Client, settings: Settings) -> None:
    """Silencing until a past time is a 400 saying so, and records nothing."""
    key = alert_key(settings, "no_owner")
    _, before = alerting.listing(settings)
    past = datetime.now(UTC) - timedelta(hours=1)
    response = client.post(f"/api/alerts/{path_of(key)}/silence", headers=WRITE,
                           json={"until": past.isoformat(), "why": "too late"})
    assert response.status_code == 400
    assert "future" in response.json()["detail"]
    _, after = alerting.listing(settings)
    assert after == before


def test_writes_to_unknown_things_are_404_for_a_writer(client: httpx.Client) -> None:
    """With write credentials, a review of an unknown process or an ack of an unknown key 404s."""
    assert client.post("/api/processes/nope/review", headers=WRITE,
                       json={}).status_code == 404
    assert client.post("/api/alerts/stuck/nope/x/ack", headers=WRITE,
                       json={}).status_code == 404


def test_alert_history_tells_when_it_fired(client: httpx.Client, settings: Settings) -> None:
    """GET /api/alerts/{key}/history lists the alert's changes, newest first, as recorded."""
    key = alert_key(settings, "stuck")
    response = client.get(f"/api/alerts/{path_of(key)}/history")
    assert response.status_code == 200
    changes = response.json()
    assert changes and changes[-1]["change"] == "firing"
    state = open_alert_state(settings.store.url)
    try:
        recorded = state.history(key)
    finally:
        state.close()
    assert [c["change"] for c in changes] == [c.change.value for c in recorded]
    assert client.get("/api/alerts/no/such/key/history").status_code == 404


def test_alert_list_filters_by_process_and_status(client: httpx.Client) -> None:
    """GET /api/alerts?process=claims holds only claims alerts; status filters too."""
    claims = client.get("/api/alerts", params={"process": "claims"}).json()
    assert claims and {a["process"] for a in claims} == {"claims"}
    firing = client.get("/api/alerts", params={"status": "firing"}).json()
    assert firing and {a["status"] for a in firing} == {"firing"}
    assert client.get("/api/alerts", params={"status": "asleep"}).status_code == 422
