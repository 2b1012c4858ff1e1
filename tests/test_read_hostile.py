"""Reading a store that already holds hostile events (written before decode refused them):
`backlight mine`, the pages and the API answer, with strict JSON, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import backlight
from pg import fresh_database
from store_support import execute

from backlight import jobs
from backlight.config import Settings, load
from backlight.web.server import running
from ingest.simulate import simulate
from schemas.event import CaseEvent, to_time_us
from storage import open_store

REAL = "payments"
"""A configured process: 30 simulated cases and one event stored at 9999-12-30."""
HOSTILE = "hostile\x1b[31m\x07"
"""A process whose every kind of hostile event is stored, beside a few ordinary ones."""
BROKEN = "broken"
"""A process whose events no figure can be computed from (a lifecycle no event may have)."""
WINDOWS = ("all", "4w", "quarter")


def _us(text: str) -> int:
    return to_time_us(datetime.fromisoformat(text))


YEAR_10000 = _us("9999-12-31T23:59:59-14:00")
"""10000-01-01T13:59:59Z: beyond what a Python datetime holds."""
NEAR_END = _us("9999-12-30T00:00:00+00:00")


def strict_json(text: str) -> Any:
    """JSON as a strict parser reads it: NaN, Infinity and -Infinity are refused."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def hostile_events(base: int, with_nul: bool) -> tuple[list[CaseEvent], int]:
    """Ordinary events with escape and bell characters and non-finite attribute values, and
    events at times no reader can use; returns them and how many of them are out of range."""
    hour = 3_600_000_000
    odd = [
        CaseEvent("h-far", HOSTILE, "far", "Submit", YEAR_10000, "complete", None, None, None),
        CaseEvent("h-end", HOSTILE, "end", "Submit", NEAR_END, "complete", None, None, None),
        CaseEvent("h-one", HOSTILE, "old", "Submit", _us("0001-01-01T00:00:00+00:00"),
                  "complete", None, None, None),
        CaseEvent("h-1960", HOSTILE, "old", "Approve", _us("1960-01-01T00:00:00+00:00"),
                  "complete", None, None, None),
    ]
    ordinary = []
    for c in range(6):
        case = f"case-{c}\x1b]0;pwned\x07\x1b[2J"
        for i, activity in enumerate(("Submit", "Check\x1b[31m\x07", "Approve")):
            attrs = '{"amount": NaN, "limit": Infinity, "floor": -Infinity}'
            ordinary.append(CaseEvent(f"h-{c}-{i}", HOSTILE, case, activity,
                                      base + (c * 5 + i) * hour, "complete", "r\x1b[0m",
                                      "team\x07", attrs))
    if with_nul:  # PostgreSQL refuses NUL in text: it can only be in a SQLite store
        ordinary.append(CaseEvent("h-nul", HOSTILE, "case-\x00-nul", "Submit\x00", base,
                                  "complete", None, None, None))
    return ordinary + odd, len(odd)


@dataclass(frozen=True)
class Filled:
    settings: Settings
    config: Path
    real_events: int
    """Events of REAL with a usable time."""
    real_4w: int
    """Of those, the ones in the 4 weeks up to REAL's latest real event."""
    hostile_events: int
    """Events of HOSTILE with a usable time."""
    hostile_out_of_range: int


def fill(url: str, config: Path, with_nul: bool) -> Filled:
    """The hostile rows written straight into the store (its own write API: no decode)."""
    store = open_store(url)
    try:
        sim = simulate(REAL, 30, seed=3, start=jobs.SIMULATION_START)
        store.write(sim.events)
        store.write([CaseEvent("p-end", REAL, "p-end", "Submit", NEAR_END, "complete", None,
                               None, None)])
        events, odd = hostile_events(sim.events[0].time_us, with_nul)
        store.write(events)
        store.write([CaseEvent(f"b-{i}", BROKEN, "b", "<script>alert(1)</script>",
                               sim.events[0].time_us + i, "<b>paused</b>", None, None, None)
                     for i in range(3)])
    finally:
        store.close()
    times = sorted(e.time_us for e in sim.events)
    four_weeks = int(timedelta(weeks=4).total_seconds() * 1_000_000)
    config.write_text(f'[store]\nurl = "{url}"\n')
    data = load(environ={}).model_dump(mode="python")
    data["store"]["url"] = url
    return Filled(Settings.model_validate(data), config, len(times),
                  sum(t >= times[-1] - four_weeks for t in times), len(events) - odd, odd)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    folder = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "sqlite":
        url, with_nul = f"sqlite:///{folder / 'store.db'}", True
    else:
        url, with_nul = fresh_database(request.getfixturevalue("postgres_url")), False
    yield fill(url, folder / "backlight.toml", with_nul)


@pytest.fixture(scope="module")
def client(filled: Filled) -> Iterator[httpx.Client]:
    with running(filled.settings) as base, httpx.Client(base_url=base, timeout=120) as http:
        yield http


@pytest.mark.parametrize("fmt", ["json", "svg", "bpmn", "xes"])
def test_mine_answers_for_a_store_of_hostile_events(filled: Filled, fmt: str) -> None:
    """`backlight mine` exits 0 on the hostile process in every format, with a well-formed
    document, and says on stderr how many events it left out for their time."""
    out = backlight("mine", "--config", str(filled.config), "--process", HOSTILE,
                    "--format", fmt)
    assert f"{filled.hostile_out_of_range} event(s)" in out.stderr, out.stderr
    if fmt == "json":
        doc = strict_json(out.stdout)
        assert doc["out_of_range_events"] == filled.hostile_out_of_range
        assert doc["window"]["to"] < "2100"  # counted from a real event, not from year 10000
        assert doc["events"] == filled.hostile_events
    else:
        ET.fromstring(out.stdout.encode())  # XML 1.0 well-formed: no raw control characters
        assert "\x1b" not in out.stdout and "\x07" not in out.stdout


def test_mine_counts_back_from_the_real_latest_event(filled: Filled) -> None:
    """An event stored at 9999-12-30 is left out: `mine` figures the real events only."""
    doc = strict_json(backlight("mine", "--config", str(filled.config), "--process", REAL).stdout)
    assert doc["events"] == filled.real_events
    assert doc["out_of_range_events"] == 1
    assert doc["window"]["to"] < "2100"


def test_every_page_and_document_answers_with_strict_json(filled: Filled,
                                                          client: httpx.Client) -> None:
    """`/`, each process's page, the API, map.svg and the downloads answer 200 in every
    window; every JSON body parses without NaN or Infinity, every XML body is well-formed."""
    for window in WINDOWS:
        for path in ("/", "/api/processes"):
            r = client.get(path, params={"window": window})
            assert r.status_code == 200, (path, window, r.text[:300])
        strict_json(client.get("/api/processes", params={"window": window}).text)
        for name in (REAL, HOSTILE):
            quoted = quote(name, safe="")
            for path in (f"/processes/{quoted}", f"/api/processes/{quoted}",
                         f"/api/processes/{quoted}/map.svg", f"/api/processes/{quoted}/stuck",
                         f"/api/processes/{quoted}/events.xes",
                         f"/api/processes/{quoted}/model.bpmn"):
                r = client.get(path, params={"window": window})
                if path.endswith("model.bpmn") and r.status_code == 404:
                    # no case completed in the window (hostile names no end activities)
                    assert window != "all" and "no model" in strict_json(r.text)["detail"]
                    continue
                assert r.status_code == 200, (path, window, r.text[:300])
                if r.headers["content-type"].startswith("application/json"):
                    strict_json(r.text)
                else:
                    assert "\x1b" not in r.text and "\x07" not in r.text, path
                    if not path.startswith("/processes/"):
                        ET.fromstring(r.content)  # SVG, XES, BPMN: well-formed XML


def test_the_overview_shows_the_real_events_despite_one_at_9999(filled: Filled,
                                                                client: httpx.Client) -> None:
    """With an event stored at 9999-12-30, the 4-week window still counts back from the
    latest real event: the overview shows its real events and the one left out."""
    rows = {r["name"]: r for r in strict_json(
        client.get("/api/processes", params={"window": "4w"}).text)}
    assert filled.real_4w > 1
    assert rows[REAL]["events"] == filled.real_4w
    assert rows[REAL]["out_of_range_events"] == 1
    assert rows[REAL]["as_of"] < "2100"
    assert rows[HOSTILE]["out_of_range_events"] == filled.hostile_out_of_range
    page = client.get("/", params={"window": "4w"}).text
    assert "1 event with an out-of-range time" in page
    process = client.get(f"/processes/{REAL}").text
    assert "1 event with an out-of-range time" in process


def test_one_broken_process_leaves_the_others_on_the_overview(filled: Filled,
                                                              client: httpx.Client) -> None:
    """A process whose events no lifecycle allows is listed from its read model; once its
    stored figures cannot be read (overwritten behind Backlight's back), a new instance's
    overview shows the error on its own row and every other process with its figures, on the
    page and in the API."""
    rows = {r["name"]: r for r in strict_json(client.get("/api/processes").text)}
    assert rows[BROKEN]["error"] is None and rows[BROKEN]["events"] == 3
    execute(filled.settings.store.url,
            """UPDATE read_model_totals SET completed = '{"alpha": "<b>x</b>"}'"""
            " WHERE process = 'broken'")
    with running(filled.settings) as base, httpx.Client(base_url=base, timeout=120) as fresh:
        rows = {r["name"]: r for r in strict_json(fresh.get("/api/processes").text)}
        page = fresh.get("/")
        broken = fresh.get(f"/processes/{BROKEN}")  # its page draws from its events
    assert rows[BROKEN]["error"] and rows[BROKEN]["events"] is None
    assert rows[REAL]["error"] is None and rows[REAL]["events"] == filled.real_events + 1
    assert rows[HOSTILE]["events"] and rows[HOSTILE]["error"] is None
    assert page.status_code == 200
    assert "could not compute this process" in page.text
    assert f'href="/processes/{REAL}?window=all"' in page.text
    assert "<b>paused</b>" not in broken.text


def test_alert_rules_evaluate_a_store_of_hostile_events(filled: Filled) -> None:
    """`backlight alerts evaluate` exits 0 on the hostile store (events in year 1, 1960,
    9999 and 10000 among ordinary ones) and evaluates both processes."""
    out = backlight("alerts", "evaluate", "--config", str(filled.config), "--dry-run",
                    "--format", "json", "--process", REAL, "--process", HOSTILE)
    assert {a["process"] for a in strict_json(out.stdout)} >= {REAL, HOSTILE}
