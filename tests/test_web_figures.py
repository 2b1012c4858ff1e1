"""GET /api/processes/{name}/figures over real HTTP: the read model's figures equal `mine`'s,
and events stored after a request are in the next one."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_support import fill_store, web_settings

from backlight.config import Settings
from backlight.mine import mine
from backlight.web.server import running
from schemas.event import CaseEvent
from storage import open_store

DEMO = ("onboarding", "payments", "claims")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = tmp_path_factory.mktemp("web-figures") / "store.db"
    fill_store(path, cases=300)
    return web_settings(path)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[httpx.Client]:
    with running(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


def within(estimate: float, exact: float, alpha: float) -> bool:
    """Within alpha of a figure rounded to 3 decimals."""
    return math.isclose(estimate, exact, rel_tol=alpha * (1 + 1e-9), abs_tol=0.0011)


def test_figures_for_all_time_equal_mine(client: httpx.Client, settings: Settings) -> None:
    """Counts, variants, edges and loops equal `mine --format json`; mean waits exact, medians
    and p90s within the stated relative error."""
    for name in DEMO:
        response = client.get(f"/api/processes/{name}/figures", params={"window": "all"})
        assert response.status_code == 200, response.text
        got = response.json()
        doc = json.loads(mine(settings, name, "json").text)
        alpha = got["approximation"]["relative_error"]
        assert got["unfolded_events"] == 0
        assert (got["events"], got["cases"]) == (doc["events"], doc["cases"]), name
        assert [(a["name"], a["count"]) for a in got["activities"]] == [
            (a["name"], a["count"]) for a in doc["activities"]]
        assert got["variant_count"] == len(doc["variants"])
        assert [(v["activities"], v["count"]) for v in got["variants"]] == [
            (v["activities"], v["count"]) for v in doc["variants"][:50]]
        edges = {(e["source"], e["target"]): e for e in got["dfg"]}
        assert {k: e["count"] for k, e in edges.items()} == {
            (e["source"], e["target"]): e["count"] for e in doc["dfg"]}
        for edge in doc["dfg"]:
            mine_wait, ours = edge["wait_seconds"], edges[(edge["source"], edge["target"])]["wait_seconds"]
            assert within(ours["mean"], mine_wait["mean"], 0.0)
            assert within(ours["median"], mine_wait["median"], alpha)
            assert within(ours["p90"], mine_wait["p90"], alpha)
        assert within(got["case_duration_seconds"]["mean"], doc["case_duration_seconds"]["mean"], 0.0)
        assert within(got["case_duration_seconds"]["median"], doc["case_duration_seconds"]["median"], alpha)
        assert got["loops"] == doc["loops"] and got["rework"]


def test_a_window_counts_the_cases_completed_in_its_days(client: httpx.Client) -> None:
    """The last 4 weeks hold some of the completed cases and no open one; the quarter at least as many."""
    whole = client.get("/api/processes/claims/figures").json()
    recent = client.get("/api/processes/claims/figures", params={"window": "4w"}).json()
    quarter = client.get("/api/processes/claims/figures", params={"window": "quarter"}).json()
    assert recent["completed_from"] is not None
    assert 0 < recent["cases"] <= quarter["cases"] <= whole["cases"] - whole["open_cases"]


def test_events_stored_after_a_request_are_in_the_next(client: httpx.Client, settings: Settings,
                                                       tmp_path: Path) -> None:
    """A new case stored while the server runs is counted on the next request, nothing re-read twice."""
    before = client.get("/api/processes/payments/figures").json()
    store = open_store(settings.store.url)
    try:
        t0 = 1_768_000_000_000_000
        store.write([CaseEvent(f"late-{i}", "payments", "late-case", activity, t0 + i * 60_000_000)
                     for i, activity in enumerate(("Receive payment order", "Check\x1b[31m"))])
    finally:
        store.close()
    after = client.get("/api/processes/payments/figures").json()
    assert (after["events"], after["cases"]) == (before["events"] + 2, before["cases"] + 1)
    assert after["open_cases"] == before["open_cases"] + 1
    assert any(a["name"] == "Check\x1b[31m" for a in after["activities"])  # data, kept as sent


def test_an_unknown_process_is_404(client: httpx.Client) -> None:
    """A process the store and the config do not know is a 404 naming it."""
    response = client.get("/api/processes/nope/figures")
    assert response.status_code == 404
    assert "nope" in response.text
