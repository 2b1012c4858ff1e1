"""The mining core against pm4py on the public event logs in ../shared/data."""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pm4py
import polars as pl
import pytest
from shared_logs_support import pm4py_xes

import mining

LOGS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "logs"
LOGS = [
    "bpic2012.xes.gz",
    "receipt.csv",
    "helpdesk.xes.gz",
    "roadtraffic100traces.xes",
    "interval_event_log.xes",
    "reviewing.xes",
    "running-example.xes",
]
KEYS = {"activity_key": "activity", "case_id_key": "case_id", "timestamp_key": "timestamp"}

pytestmark = pytest.mark.shared_data


def read_log(name: str) -> pd.DataFrame:
    """Read one shared log with pm4py, as a pandas frame in file order."""
    path = LOGS_DIR / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.endswith(".csv"):
            return pm4py.format_dataframe(pd.read_csv(path))
    return pm4py_xes(name)


def to_frame(log: pd.DataFrame) -> pl.DataFrame:
    """Convert a pm4py frame into Backlight's event frame; seq is the row number."""
    n = len(log)

    def text(column: str) -> pl.Series:
        if column not in log.columns:
            return pl.Series(column, [None] * n, dtype=pl.String)
        return pl.from_pandas(log[column].astype("string")).cast(pl.String)

    lifecycle = text("lifecycle:transition").fill_null("complete").str.to_lowercase()
    timestamp = pl.from_pandas(log["time:timestamp"]).dt.convert_time_zone("UTC")
    return mining.check_frame(
        pl.DataFrame(
            {
                "event_id": pl.int_range(n, eager=True).cast(pl.String),
                "case_id": text("case:concept:name"),
                "activity": text("concept:name"),
                "timestamp": timestamp.dt.cast_time_unit("us"),
                "lifecycle": lifecycle,
                "resource": text("org:resource"),
                "team": text("org:group"),
                "attributes": pl.Series([None] * n, dtype=pl.String),
                "seq": pl.int_range(n, eager=True, dtype=pl.Int64),
            }
        )
    )


@dataclass
class Loaded:
    """One log: our frame and summary, and pm4py's answers on the same events."""

    frame: pl.DataFrame
    summary: dict[str, Any]
    raw: pd.DataFrame  # our frame in seq order, as pandas: the input order pm4py sees
    chrono: pd.DataFrame  # the same after pm4py.format_dataframe (chronological per case)
    pm4py_cache: dict[str, Any] = field(default_factory=dict)

    def pm(self, name: str, chronological: bool = False) -> Any:
        """pm4py.`name` on a fresh copy of the raw or the chronological frame, memoised."""
        key = f"{name}:{chronological}"
        if key not in self.pm4py_cache:
            frame = (self.chrono if chronological else self.raw).copy()
            self.pm4py_cache[key] = getattr(pm4py, name)(frame, **KEYS)
        return self.pm4py_cache[key]


@pytest.fixture(scope="module")
def load() -> Callable[[str], Loaded]:
    """Load each log once per module, on first use."""
    if not LOGS_DIR.is_dir():
        pytest.skip(f"shared event logs not found at {LOGS_DIR} (../shared/data is absent)")
    cache: dict[str, Loaded] = {}

    def get(name: str) -> Loaded:
        if name not in cache:
            if not (LOGS_DIR / name).is_file():
                pytest.skip(f"shared event log {name} not found in {LOGS_DIR}")
            frame = to_frame(read_log(name))
            raw = frame.sort("seq").to_pandas()
            chrono = pm4py.format_dataframe(
                raw.copy(), case_id="case_id", activity_key="activity", timestamp_key="timestamp"
            )
            cache[name] = Loaded(frame, mining.summarize(frame, name), raw, chrono)
        return cache[name]

    return get


@pytest.mark.parametrize("name", LOGS)
def test_dfg_counts_equal_pm4py(load: Callable[[str], Loaded], name: str) -> None:
    """Directly-follows counts equal pm4py.discover_dfg on the frame in arrival order."""
    log = load(name)
    dfg, _, _ = log.pm("discover_dfg")
    ours = {(e["source"], e["target"]): e["count"] for e in log.summary["dfg"]}
    assert ours == dfg


@pytest.mark.parametrize("name", LOGS)
def test_start_end_activities_equal_pm4py(load: Callable[[str], Loaded], name: str) -> None:
    """Start and end activities equal pm4py.discover_dfg on the chronological frame."""
    log = load(name)
    _, start, end = log.pm("discover_dfg", chronological=True)
    assert log.summary["start_activities"] == start
    assert log.summary["end_activities"] == end


@pytest.mark.parametrize("name", LOGS)
def test_variants_equal_pm4py(load: Callable[[str], Loaded], name: str) -> None:
    """Variants and their counts equal pm4py.get_variants on the chronological frame."""
    log = load(name)
    ours = {tuple(v["activities"]): v["count"] for v in log.summary["variants"]}
    assert ours == log.pm("get_variants", chronological=True)
    counts = [v["count"] for v in log.summary["variants"]]
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) == log.summary["cases"]


@pytest.mark.parametrize("name", LOGS)
def test_case_durations_equal_pm4py(load: Callable[[str], Loaded], name: str) -> None:
    """Case durations equal pm4py.get_all_case_durations; mean and median to the ms."""
    log = load(name)
    theirs = log.pm("get_all_case_durations", chronological=True)
    ours = sorted(mining.case_durations(log.frame)["duration_s"].to_list())
    assert ours == pytest.approx(theirs, abs=1e-6)
    stats = log.summary["case_duration_seconds"]
    assert stats["mean"] == pytest.approx(statistics.fmean(theirs), abs=1e-3)
    assert stats["median"] == pytest.approx(statistics.median(theirs), abs=1e-3)


@pytest.mark.parametrize("name", LOGS)
def test_waiting_times_equal_pm4py(load: Callable[[str], Loaded], name: str) -> None:
    """Mean and median wait per edge equal pm4py.discover_performance_dfg (well within 1 s)."""
    log = load(name)
    perf, _, _ = log.pm("discover_performance_dfg")
    assert {(e["source"], e["target"]) for e in log.summary["dfg"]} == set(perf)
    for edge in log.summary["dfg"]:
        theirs = perf[(edge["source"], edge["target"])]
        assert edge["wait_seconds"]["mean"] == pytest.approx(theirs["mean"], abs=1e-3)
        assert edge["wait_seconds"]["median"] == pytest.approx(theirs["median"], abs=1e-3)
        assert edge["wait_seconds"]["max"] == pytest.approx(theirs["max"], abs=1e-3)


def test_pm4py_reads_unsorted_cases_in_frame_order(load: Callable[[str], Loaded]) -> None:
    """Where a case's rows are not chronological, pm4py's start activities follow row order."""
    log = load("interval_event_log.xes")
    raw = log.raw
    unsorted = raw.groupby("case_id", sort=False)["timestamp"].apply(
        lambda ts: not ts.is_monotonic_increasing
    )
    assert unsorted.any()  # this log lists events by start time, timestamps are completions
    _, start_rows, _ = log.pm("discover_dfg")
    _, start_chrono, _ = log.pm("discover_dfg", chronological=True)
    assert start_rows != start_chrono
    assert log.summary["start_activities"] == start_chrono


@pytest.mark.parametrize("name", LOGS)
def test_summary_is_plain_json(load: Callable[[str], Loaded], name: str) -> None:
    """The summary survives a JSON round trip unchanged and counts every event."""
    log = load(name)
    assert json.loads(json.dumps(log.summary)) == log.summary
    assert log.summary["events"] == log.frame.height
    assert sum(a["count"] for a in log.summary["activities"]) == log.frame.height
    assert sum(log.summary["start_activities"].values()) == log.summary["cases"]


@pytest.mark.bench
def test_bench_summarize_vs_pm4py_bpic(load: Callable[[str], Loaded]) -> None:
    """Time summarize() against pm4py's DFG, performance DFG and variants on BPIC 2012."""
    log = load("bpic2012.xes.gz")
    frames = [log.raw.copy() for _ in range(6)]  # pm4py adds a column to its input
    ours, theirs = [], []
    for i in range(3):
        start = time.perf_counter()
        mining.summarize(log.frame, "bpic2012")
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        pm4py.discover_dfg(frames[2 * i], **KEYS)
        pm4py.discover_performance_dfg(frames[2 * i + 1], **KEYS)
        pm4py.get_variants(frames[2 * i], **KEYS)
        theirs.append(time.perf_counter() - start)
    print(f"\nsummarize {min(ours):.3f}s; pm4py dfg+performance dfg+variants {min(theirs):.3f}s")
    assert min(ours) < 3 * min(theirs)
