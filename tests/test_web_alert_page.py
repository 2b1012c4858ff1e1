"""An alert's own page and its JSON over a real server on a real SQLite store: the timeline
with who acted and the evidence at each step, the chart around the episode, the cases, the
routes under a key with slashes, and event text that stays text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from urllib.parse import quote

import httpx
import pytest
from alert_page_support import ACK_NOTE, SLOW, SLOW_KEY, AlertSite, alert_site
from web_support import WRITER_TOKEN

from backlight.web.server import running
from storage import open_alert_state


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, AlertSite]]:
    made = alert_site(tmp_path_factory.mktemp("alert-page") / "store.db")
    with running(made.settings) as base:
        yield base, made


def page_of(key: str) -> str:
    return f"/alerts/{quote(key, safe='')}"


def section(html: str, name: str) -> str:
    found = re.search(rf'<section class="card" id="{name}">(.*?)</section>', html, re.S)
    assert found, f"no #{name} section"
    return found.group(1)


def test_the_page_shows_the_timeline_with_who_acted_and_evidence_at_each_step(
        site: tuple[str, AlertSite]) -> None:
    """Fired, fired again (critical), acknowledged by alice with her note, oldest first; each
    step carries the evidence the alert had then as a table, never raw JSON."""
    base, made = site
    r = httpx.get(base + page_of(SLOW_KEY))
    assert r.status_code == 200, r.text
    state = open_alert_state(made.settings.store.url, made.settings.store.session())
    try:
        stored = list(reversed(state.history(SLOW_KEY)))
    finally:
        state.close()
    timeline = section(r.text, "timeline")
    labels = re.findall(r'<strong class="step-label">([^<]+)</strong>', timeline)
    words = {"firing": "Fired", "acknowledged": "Acknowledged"}
    assert labels == [words[c.change.value] for c in stored]
    assert labels[0] == "Fired" and labels[-1] == "Acknowledged"
    steps = [tuple(part.split('">', 1))
             for part in timeline.split('<li class="step step-')[1:]]
    assert [s[0] for s in steps] == [c.change.value for c in stored]
    acked = unescape(steps[-1][1])
    assert "by alice" in acked and f"note: {ACK_NOTE}" in acked
    for (_change, body), change in zip(steps, stored, strict=True):
        assert body.count('<dl class="evidence">') == 1
        shown = unescape(re.sub(r"<[^>]+>", " ", body))
        assert f"{change.alert.evidence['baseline']['median_days']:g}" in shown  # type: ignore[index]
        assert change.alert.severity.value in shown
    assert "&lt;b&gt;re-staffed&lt;/b&gt;" in timeline and "<b>re-staffed" not in r.text


def test_the_chart_plots_the_wait_around_the_episode_with_band_and_onset(
        site: tuple[str, AlertSite]) -> None:
    """The inline SVG: the baseline window shaded, its band and level, a point per day with
    waits in the span, the onset marked on the alert's "since"; the step's name in its title is
    escaped."""
    base, _ = site
    html = httpx.get(base + page_of(SLOW_KEY)).text
    api = httpx.get(base + "/api" + page_of(SLOW_KEY)).json()
    chart = section(html, "chart")
    svg = re.search(r'<svg class="episode-chart".*?</svg>', chart, re.S)
    assert svg, "no chart"
    body = svg.group(0)
    assert 'class="ep-band"' in body and 'class="ep-level"' in body
    assert 'class="ep-base-window"' in body and 'class="ep-line"' in body
    assert f"onset {api['alert']['since']}" in body
    days = re.findall(r"<title>(\d{4}-\d\d-\d\d): ([\d.]+) d</title>", body)
    assert len(days) >= 20 and days == sorted(days, key=lambda d: d[0])
    window = api["alert"]["evidence"]["baseline_window"]
    assert days[0][0] >= window["from"]
    after = [float(v) for d, v in days if d >= api["alert"]["evidence"]["window"]["from"]]
    before = [float(v) for d, v in days if d <= window["to"]]
    assert min(after) > max(sorted(before)[: len(before) // 2])  # above the baseline's lower half
    assert "aria-label=\"Daily median wait before &lt;img src=x onerror=alert(1)&gt;" in body
    assert "<img" not in chart


def test_the_cases_affected_are_listed(site: tuple[str, AlertSite]) -> None:
    """Every case the alert names is listed, as text."""
    base, _ = site
    api = httpx.get(base + "/api" + page_of(SLOW_KEY)).json()
    cases = section(httpx.get(base + page_of(SLOW_KEY)).text, "cases")
    listed = [unescape(c) for c in re.findall(r"<li><code>([^<]*)</code></li>", cases)]
    assert listed == api["alert"]["cases"] and listed


def test_api_gives_the_alert_and_its_timeline(site: tuple[str, AlertSite]) -> None:
    """``GET /api/alerts/{key}``: the alert as listed and its changes oldest first, each with the
    alert as stored then; ``.../history`` still answers its own route."""
    base, _ = site
    r = httpx.get(base + "/api" + page_of(SLOW_KEY))
    assert r.status_code == 200
    body = r.json()
    assert body["alert"]["key"] == SLOW_KEY and body["alert"]["acknowledged_by"] == "alice"
    assert [s["change"] for s in body["timeline"]] == ["firing", "firing", "acknowledged"]
    assert [s["at"] for s in body["timeline"]] == sorted(s["at"] for s in body["timeline"])
    assert all(s["alert"]["evidence"]["activity"] == SLOW for s in body["timeline"])
    history = httpx.get(base + "/api" + page_of(SLOW_KEY) + "/history").json()
    assert isinstance(history, list) and len(history) == len(body["timeline"])
    assert httpx.get(base + "/api/alerts/no/such/alert").status_code == 404


def test_routes_under_a_key_with_slashes_still_match(site: tuple[str, AlertSite]) -> None:
    """A key with slashes and ``->`` (a hand-off) opens its page, written with raw or quoted
    slashes; POST .../silence under it still silences it; GET .../ack is no alert (404)."""
    base, _ = site
    alerts = httpx.get(base + "/api/alerts").json()
    key = next(a["key"] for a in alerts if a["rule"] == "handoff")
    assert key.count("/") >= 3 and "->" in key
    assert httpx.get(f"{base}/alerts/{key}").status_code == 200
    assert httpx.get(base + page_of(key)).status_code == 200
    assert httpx.get(base + page_of(key) + "/ack").status_code == 404
    with httpx.Client(base_url=base, timeout=60) as client:
        form = client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf
        client.post("/login", data={"csrf_token": csrf.group(1), "token": WRITER_TOKEN,
                                    "next": "/"})
        r = client.post(page_of(key) + "/silence", data={
            "csrf_token": csrf.group(1), "until": "2999-01-01", "why": "known",
            "back": page_of(key)})
        assert r.status_code == 303 and r.headers["location"].startswith(page_of(key))
        shown = client.get(r.headers["location"]).text
    assert "Silenced by <strong>alice</strong>" in shown


def test_lists_and_the_process_page_link_to_the_alert(site: tuple[str, AlertSite]) -> None:
    """The alerts list and the process page link each alert's key to its page."""
    base, _ = site
    href = f'href="{page_of(SLOW_KEY)}"'
    assert href in httpx.get(base + "/alerts").text
    assert href in httpx.get(base + "/processes/onboarding").text


def test_hostile_alert_page_keeps_event_text_as_text(site: tuple[str, AlertSite]) -> None:
    """A stuck alert whose step and cases are HTML payloads: every one shows escaped; no raw
    tag from the events reaches the page; an unknown key is a 404 page."""
    base, _ = site
    alerts = httpx.get(base + "/api/alerts", params={"process": "hostile"}).json()
    stuck = next(a for a in alerts if a["subject"] == "stuck at <svg onload=alert(2)>")
    html = httpx.get(base + page_of(stuck["key"])).text
    assert "stuck at &lt;svg onload=alert(2)&gt;" in html
    assert "<svg onload" not in html and "<img src=x" not in html and "<script>alert" not in html
    assert "case-0-&lt;img src=x onerror=alert(&#39;case&#39;)&gt;" in html
    assert "No chart" in section(html, "chart")
    missing = httpx.get(base + "/alerts/no/such/<b>alert</b>")
    assert missing.status_code == 404 and "<b>alert</b>" not in missing.text


def test_reading_the_page_records_nothing(site: tuple[str, AlertSite]) -> None:
    """Reading the page records nothing: the alert's history is as long before as after."""
    base, made = site
    state = open_alert_state(made.settings.store.url, made.settings.store.session())
    try:
        before = len(state.history(SLOW_KEY))
        httpx.get(base + page_of(SLOW_KEY))
        assert len(state.history(SLOW_KEY)) == before
    finally:
        state.close()
