"""`summarize`: the `mine --format json` shape, hand-offs, durations and weekly throughput."""

from __future__ import annotations

import json
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

import mining
from mining import Handoff, WaitStats, WeekThroughput

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, ISO week 2026-W10
TOP_KEYS = [
    "process", "events", "cases", "window", "activities", "start_activities", "end_activities",
    "dfg", "variants", "case_duration_seconds", "rework", "loops", "handoffs",
    "throughput_by_week",
    "service_times",
]  # fmt: skip


def frame(rows: list[tuple[str, str, float, str | None, str | None]]) -> pl.DataFrame:
    """Events (case, activity, seconds after T0, resource, team) in arrival order."""
    return mining.frame_from_rows(
        {
            "case_id": c,
            "activity": a,
            "timestamp": T0 + timedelta(seconds=s),
            "resource": r,
            "team": t,
        }
        for c, a, s, r, t in rows
    )


ONBOARDING = frame(
    [
        ("c1", "submit", 0, "u1", "front"),
        ("c1", "verify", 10.0006, "u2", "kyc"),
        ("c1", "verify", 40, "u3", "kyc"),
        ("c1", "approve", 100, "u4", "front"),
        ("c2", "submit", 86400 * 7, "u1", "front"),
        ("c2", "verify", 86400 * 7 + 30, None, "kyc"),
        ("c2", "approve", 86400 * 7 + 90, "u4", None),
    ]
)


def plain_json(value: Any) -> bool:
    """True when the value is made only of JSON's own Python types."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_summary_has_the_design_shape() -> None:
    """The summary has DESIGN.md's keys and values, with plain JSON types only."""
    s = mining.summarize(ONBOARDING, "onboarding")
    assert list(s) == TOP_KEYS
    assert plain_json(s)
    assert (s["process"], s["events"], s["cases"]) == ("onboarding", 7, 2)
    assert s["window"] == {"from": "2026-03-02T09:00:00+00:00", "to": "2026-03-09T09:01:30+00:00"}
    assert s["activities"] == [
        {"name": "verify", "count": 3},
        {"name": "approve", "count": 2},
        {"name": "submit", "count": 2},
    ]
    assert s["start_activities"] == {"submit": 2}
    assert s["end_activities"] == {"approve": 2}
    assert s["dfg"][0] == {
        "source": "submit",
        "target": "verify",
        "count": 2,
        "wait_seconds": {"mean": 20.0, "median": 20.0, "p90": 28.0, "max": 30.0},
    }
    assert s["variants"] == [
        {"activities": ["submit", "verify", "approve"], "count": 1, "share": 0.5},
        {"activities": ["submit", "verify", "verify", "approve"], "count": 1, "share": 0.5},
    ]
    assert s["case_duration_seconds"] == {"mean": 95.0, "median": 95.0, "p90": 99.0}
    assert s["rework"] == [
        {"activity": "verify", "cases": 1, "share": 0.5, "self_loop_cases": 1,
         "loop_cases": 0, "repeat_cases": 0, "redo_cases": 1},
    ]  # fmt: skip
    assert s["loops"] == [{"cycle": ["verify"], "cases": 1}]
    assert json.loads(json.dumps(s)) == s


def test_floats_are_rounded_to_three_decimals() -> None:
    """Waiting times and shares carry at most three decimals."""
    s = mining.summarize(ONBOARDING, "onboarding")
    edge = next(e for e in s["dfg"] if (e["source"], e["target"]) == ("verify", "verify"))
    assert edge["wait_seconds"]["max"] == 29.999  # 40 - 10.0006 s
    thirds = frame([("a", "x", 0, None, None), ("b", "x", 0, None, None), ("c", "y", 0, None, None)])
    share = mining.summarize(thirds, "p")["variants"][0]["share"]
    assert share == 0.667


def test_empty_frame_gives_a_valid_summary() -> None:
    """An empty frame gives zeros, nulls for the window, and empty lists."""
    s = mining.summarize(mining.empty_frame(), "claims")
    assert list(s) == TOP_KEYS
    assert s["events"] == s["cases"] == 0
    assert s["window"] == {"from": None, "to": None}
    assert s["case_duration_seconds"] == {"mean": 0.0, "median": 0.0, "p90": 0.0}
    for key in ["activities", "dfg", "variants", "rework", "loops", "handoffs"]:
        assert s[key] == []
    assert s["start_activities"] == s["end_activities"] == {}
    assert json.loads(json.dumps(s)) == s


def test_handoffs_between_known_teams() -> None:
    """Team changes between consecutive events are counted with waits; unknown teams skipped."""
    first, second = mining.discover_handoffs(ONBOARDING)
    assert (first.from_team, first.to_team, first.count, first.cases) == ("front", "kyc", 2, 2)
    assert astuple(first.wait) == pytest.approx((20.0003, 20.0003, 28.00006, 30.0))
    assert second == Handoff("kyc", "front", 1, 1, WaitStats(60.0, 60.0, 60.0, 60.0))
    s = mining.summarize(ONBOARDING, "onboarding")
    assert s["handoffs"][1] == {
        "from_team": "kyc",
        "to_team": "front",
        "count": 1,
        "cases": 1,
        "wait_seconds": {"mean": 60.0, "median": 60.0, "p90": 60.0, "max": 60.0},
    }


def test_throughput_by_iso_week_of_case_start() -> None:
    """Cases are grouped by the ISO week they started in, with their median duration."""
    assert mining.throughput_by_week(ONBOARDING) == [
        WeekThroughput("2026-W10", 1, 100.0),
        WeekThroughput("2026-W11", 1, 90.0),
    ]
    new_year = frame([("x", "a", 0, None, None), ("x", "b", 60, None, None)]).with_columns(
        pl.col("timestamp") - pl.duration(days=60)  # 2026-01-01, in ISO week 2026-W01
    )
    assert mining.throughput_by_week(new_year) == [WeekThroughput("2026-W01", 1, 60.0)]


def test_lifecycle_option_filters_every_figure() -> None:
    """summarize(lifecycle=...) counts only those transitions, everywhere."""
    df = ONBOARDING.with_columns(
        pl.when(pl.col("activity") == "verify")
        .then(pl.lit("start"))
        .otherwise(pl.lit("complete"))
        .alias("lifecycle")
    )
    s = mining.summarize(df, "onboarding", lifecycle="complete")
    assert (s["events"], s["cases"]) == (4, 2)
    assert [e["source"] + ">" + e["target"] for e in s["dfg"]] == ["submit>approve"]
    with pytest.raises(mining.MiningError):
        mining.summarize(df, "onboarding", lifecycle="finish")


def test_summary_rejects_an_invalid_frame() -> None:
    """summarize checks the frame first and names the problem."""
    with pytest.raises(mining.MiningError, match="missing column 'seq'"):
        mining.summarize(ONBOARDING.drop("seq"), "onboarding")
