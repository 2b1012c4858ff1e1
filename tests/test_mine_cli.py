"""`backlight mine` as a user runs it: every format, conformance from the config, the
simulator's injected rework found, and a clear error for an unknown process."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import backlight, shared_file

from ingest.logfiles import read_log
from ingest.simulate import Anomalies, ReworkLoop, simulate
from storage import open_store

LOOP = ("Request missing documents", "Documents received")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding simulated onboarding (with injected rework), and its config."""
    work = tmp_path_factory.mktemp("mine-cli")
    store = open_store(f"sqlite:///{work / 's.db'}")
    sim = simulate("onboarding", 400, seed=2,
                   anomalies=Anomalies(rework=ReworkLoop(LOOP, share=0.2)))
    store.write(sim.events)
    store.close()
    (work / "truth.json").write_text(json.dumps(sim.ground_truth))
    path = work / "b.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{work / "s.db"}"\n')
    return path


@pytest.fixture(scope="module")
def fines_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the public road-traffic log, and a config naming its documented model
    (skips when ../shared/data is absent)."""
    log, model = shared_file("logs/roadtraffic100traces.xes"), shared_file("models/roadtraffic.pnml")
    work = tmp_path_factory.mktemp("mine-cli-fines")
    store = open_store(f"sqlite:///{work / 's.db'}")
    store.write(list(read_log(log, "fines")))
    store.close()
    path = work / "b.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{work / "s.db"}"\n\n[[processes]]\n'
                    f'name = "fines"\nreference_model = "{model}"\n')
    return path


def mine(config: Path, *args: str) -> str:
    return backlight("mine", "--config", str(config), *args).stdout


def test_injected_rework_loop_is_found(config: Path) -> None:
    """The simulator's injected document loop shows as rework and as a loop, in at least the
    cases it was injected into."""
    truth = json.loads((config.parent / "truth.json").read_text())["anomalies"]["rework"]
    doc = json.loads(mine(config, "--process", "onboarding", "--format", "json"))
    rework = {r["activity"]: r for r in doc["rework"]}
    for activity in LOOP:
        assert rework[activity]["cases"] >= len(truth["cases"])
    loops = {tuple(lp["cycle"]): lp["cases"] for lp in doc["loops"]}
    assert loops[tuple(sorted(LOOP))] >= len(truth["cases"])


@pytest.mark.shared_data
def test_conformance_from_the_configured_model(fines_config: Path) -> None:
    """A process with a reference_model gets token-replay fitness and findings in its JSON."""
    doc = json.loads(mine(fines_config, "--process", "fines", "--format", "json"))
    checked = doc["conformance"]
    assert 0 <= checked["fitness"]["log_fitness"] <= 1
    assert checked["cases"] == 100 and checked["findings"]


@pytest.mark.parametrize("view", ["frequency", "performance"])
def test_svg_map_is_svg(config: Path, view: str, tmp_path: Path) -> None:
    """--format svg --out writes an SVG document naming the process's activities."""
    out = tmp_path / "map.svg"
    backlight("mine", "--config", str(config), "--process", "onboarding", "--format", "svg",
              "--view", view, "--out", str(out))
    root = ET.fromstring(out.read_text())
    assert root.tag.endswith("svg")
    assert "Risk review" in out.read_text()


def test_bpmn_and_xes_formats(config: Path, tmp_path: Path) -> None:
    """--format bpmn is BPMN XML (and says on stderr what it left out); --format xes reads back."""
    proc = backlight("mine", "--config", str(config), "--process", "onboarding", "--format",
                     "bpmn")
    assert "definitions" in ET.fromstring(proc.stdout).tag
    assert "The model is built from" in proc.stderr
    assert "<!-- Backlight discovered this model" in proc.stdout  # the file says it too
    out = tmp_path / "o.xes"
    backlight("mine", "--config", str(config), "--process", "onboarding", "--format", "xes",
              "--out", str(out))
    truth = json.loads((config.parent / "truth.json").read_text())
    assert sum(1 for _ in read_log(out, "onboarding")) == truth["events"]


def test_unknown_process_is_a_clear_error(config: Path) -> None:
    """Mining a process the store has no events of names the known processes and exits 2."""
    proc = backlight("mine", "--config", str(config), "--process", "onbaording", check=False)
    assert proc.returncode == 2
    assert "'onbaording'" in proc.stderr and "with events: onboarding" in proc.stderr


def test_bpmn_comment_survives_hostile_activity_names() -> None:
    """An activity name with "--" or "-->" in the left-out notes keeps the BPMN well-formed."""
    from backlight.mine import _with_comment

    xml = _with_comment('<?xml version="1.0"?><definitions/>',
                        ("Activity 'x-->y--z' is not in the model",))
    assert ET.fromstring(xml).tag == "definitions"
    assert "x- ->y- -z" in xml
