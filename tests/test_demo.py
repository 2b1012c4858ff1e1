"""`backlight demo`, the README's main job, end to end as a user runs it."""

from __future__ import annotations

import json
import re
import signal
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import httpx
import pytest
from conftest import popen_backlight
from numpy import busday_count

pytestmark = pytest.mark.kafka


def test_demo_runs_everything_and_says_where_the_results_are(tmp_path: Path) -> None:
    """The demo (its defaults) starts its own Kafka, stores every simulated event, finds the live
    map equal to the store, writes a map and figures per process, finds the injected anomalies
    (still firing after its rounds along the weeks) and the governance gaps as alerts, stops
    the broker, and ends by serving the web app over
    the same processes and alerts until it is told to stop."""
    work = tmp_path / "demo"
    lines = []
    with popen_backlight("--log-level", "WARNING", "demo", "--workdir", str(work),
                         "--port", "0") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Web app:"):
                break
        served = re.search(r"(http://\S+?)/ ", lines[-1])
        assert served, "".join(lines) + (proc.stderr.read() if proc.stderr else "")
        url = served.group(1)
        overview = httpx.get(f"{url}/", timeout=120)
        listed = httpx.get(f"{url}/api/processes", timeout=120).json()
        served_alerts = httpx.get(f"{url}/api/alerts", timeout=60).json()
        read = httpx.get(f"{url}/api/processes/claims/figures", timeout=60).json()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
    out = "".join(lines) + rest
    assert overview.status_code == 200 and "claims" in overview.text
    assert {p["name"]: p["cases"] for p in listed} == {
        "onboarding": 2000, "payments": 2000, "claims": 2000}
    assert "0 dead-lettered" in out and "Local broker stopped." in out
    assert (read["cases"], read["unfolded_events"]) == (2000, 0)  # folded by the demo already
    assert out.count("counts equal to the store's") == 3
    for process in ("onboarding", "payments", "claims"):
        line = next(x for x in out.splitlines() if x.strip().startswith(process) and "paths" in x)
        assert "equal to the DFG mined from the store" in line
        ET.fromstring((work / "maps" / f"{process}.frequency.svg").read_text())
        ET.fromstring((work / "maps" / f"{process}.performance.svg").read_text())
        figures = json.loads((work / "maps" / f"{process}.json").read_text())
        assert figures["cases"] == 2000 and figures["dfg"]
    truth = {s["process"]: s for s in json.loads((work / "ground-truth.json").read_text())
             ["simulations"]}
    assert set(truth) == {"onboarding", "payments", "claims"}
    alerts = json.loads((work / "alerts.json").read_text())
    fired = {(a["rule"], a["process"]) for a in alerts if a["status"] == "firing"}
    # governance, from the embedded config: payments last reviewed 2024, claims has no owner
    assert {("stale_review", "payments"), ("no_owner", "claims")} <= fired
    # the waits injected before Risk review for region=east, named with their segment and onset
    slow = [a for a in alerts if a["rule"] == "bottleneck" and a["process"] == "onboarding"]
    assert [(a["subject"], a["segment"]) for a in slow] == [
        ("wait before Risk review", {"region": "east"})]
    onset = date.fromisoformat(truth["onboarding"]["anomalies"]["bottleneck"]["since"][:10])
    assert abs(busday_count(onset, date.fromisoformat(slow[0]["since"]))) <= 3
    assert ("rework", "onboarding") in fired
    # evaluated along the weeks with the state kept: the injected anomalies are still firing at
    # the end, none resolved by the passing of time (claims' repeated request for documents)
    assert slow[0]["status"] == "firing"
    assert ("rework", "claims") in fired
    # the claims stuck after Assessment are listed by case id, and were injected
    stuck = [a for a in alerts if a["rule"] == "stuck" and a["process"] == "claims"]
    listed = {c for a in stuck for c in a["cases"]}
    assert listed and listed <= set(truth["claims"]["anomalies"]["stuck"]["cases"])
    assert "Alerts:" in out
    assert {a["key"] for a in served_alerts} >= {a["key"] for a in alerts}
    assert not (work / "broker" / "broker.json").exists(), "the demo's broker was left running"
