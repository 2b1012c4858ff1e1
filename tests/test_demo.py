"""`backlight demo`, the README's main job, end to end as a user runs it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import backlight

pytestmark = pytest.mark.kafka


def test_demo_runs_everything_and_says_where_the_results_are(tmp_path: Path) -> None:
    """The demo starts its own Kafka, stores every simulated event, finds the live map equal to
    the store, writes a map and figures per process, and stops the broker."""
    work = tmp_path / "demo"
    proc = backlight("--log-level", "WARNING", "demo", "--cases", "60", "--workdir", str(work),
                     timeout=300)
    out = proc.stdout
    assert "0 dead-lettered" in out and "Local broker stopped." in out
    for process in ("onboarding", "payments", "claims"):
        line = next(x for x in out.splitlines() if x.strip().startswith(process) and "paths" in x)
        assert "equal to the DFG mined from the store" in line
        ET.fromstring((work / "maps" / f"{process}.frequency.svg").read_text())
        ET.fromstring((work / "maps" / f"{process}.performance.svg").read_text())
        figures = json.loads((work / "maps" / f"{process}.json").read_text())
        assert figures["cases"] == 60 and figures["dfg"]
    truth = json.loads((work / "ground-truth.json").read_text())
    assert len(truth["simulations"]) == 3
    assert not (work / "broker" / "broker.json").exists(), "the demo's broker was left running"
