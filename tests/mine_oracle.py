"""The oracle of the end-to-end tests: `backlight mine` on what Kafka brought in equals pm4py
on the public log itself."""

from __future__ import annotations

import json
import statistics
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import SHARED_DATA, backlight, shared_file, write_config
from shared_logs_support import pm4py_xes

CASE, ACT, TS = "case:concept:name", "concept:name", "time:timestamp"

LOGS = {  # file -> process name in the store
    "bpic2012.xes.gz": "bpic2012",
    "receipt.csv": "receipt",
    "helpdesk.xes.gz": "helpdesk",
    "roadtraffic100traces.xes": "roadtraffic",
    "interval_event_log.xes": "interval",
    "reviewing.xes": "reviewing",
}


@pytest.fixture(scope="module")
def store_config(kafka_bootstrap: str, bpic_topic: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All six logs replayed with `backlight replay` (BPIC 2012: the session's replay,
    conftest's ``bpic_topic``) and consumed with `backlight consume`."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent: the public event logs live beside the repo")
    work = tmp_path_factory.mktemp("mine")
    tag = work.name.replace("_", "-")
    replayed = {"bpic2012.xes.gz": bpic_topic}
    sources = [(replayed.get(name, f"{process}.{tag}"), process) for name, process in LOGS.items()]
    cfg = write_config(work / "b.toml", kafka_bootstrap, work / "store.db", sources,
                       f"mine-{tag}")
    for (name, process), (topic, _) in zip(LOGS.items(), sources, strict=True):
        if name in replayed:
            continue
        backlight("replay", str(shared_file(f"logs/{name}")), "--process", process,
                  "--topic", topic, "--config", str(cfg))
    backlight("consume", "--config", str(cfg), "--exit-when-idle", "2")
    return cfg


def pm4py_frame(name: str) -> pd.DataFrame:
    """The log as pm4py reads it, events of each case in time order (stable: ties keep file order)."""
    path = shared_file(f"logs/{name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = pd.read_csv(path) if name.endswith(".csv") else pm4py_xes(name)
        frame[TS] = pd.to_datetime(frame[TS], utc=True, format="ISO8601")
    # The interval log also carries start_timestamp, by which pm4py would order its events;
    # Backlight keeps it as an attribute and orders by the event's own time, so compare on that.
    frame = frame[[CASE, ACT, TS]]
    return frame.sort_values([CASE, TS], kind="stable").reset_index(drop=True)


def assert_mine_equals_pm4py(store_config: Path, name: str) -> None:
    """`backlight mine --format json` on the store ``store_config`` names equals pm4py on the
    log file ``name`` (of ../shared/data/logs)."""
    import pm4py

    out = backlight("mine", "--process", LOGS[name], "--format", "json",
                    "--config", str(store_config))
    ours: dict[str, Any] = json.loads(out.stdout)
    log = pm4py_frame(name)
    keys = {"activity_key": ACT, "case_id_key": CASE, "timestamp_key": TS}
    dfg, starts, ends = pm4py.discover_dfg(log, **keys)
    perf, _, _ = pm4py.discover_performance_dfg(log, **keys)

    assert ours["events"] == len(log)
    assert ours["cases"] == log[CASE].nunique()
    assert {(e["source"], e["target"]): e["count"] for e in ours["dfg"]} == dict(dfg)
    assert ours["start_activities"] == dict(starts)
    assert ours["end_activities"] == dict(ends)
    for edge in ours["dfg"]:
        theirs = perf[(edge["source"], edge["target"])]
        assert edge["wait_seconds"]["mean"] == pytest.approx(theirs["mean"], abs=1.0)
        assert edge["wait_seconds"]["median"] == pytest.approx(theirs["median"], abs=1.0)
    variants = pm4py.get_variants(log, **keys)
    assert {tuple(v["activities"]): v["count"] for v in ours["variants"]} == dict(variants)
    durations = pm4py.get_all_case_durations(log, **keys)
    assert ours["case_duration_seconds"]["mean"] == pytest.approx(statistics.mean(durations),
                                                                  abs=1.0)
    assert ours["case_duration_seconds"]["median"] == pytest.approx(
        statistics.median(durations), abs=1.0)
