"""Benchmark (on demand: python -m pytest -m bench -s tests/test_bench_anchors.py): the alert
round of one process with many open alerts, each anchored on a day of its own
(``alerts.anchors``). Printed side by side: the round without anchors, with each anchored run
judging every subject (as before ``alerts.context.Scope``: a whole run of the rule per
distinct anchor), and with each anchored run judging only its keys. The scoped round must stay
within issue 15's target of 2 s per process, and find what the whole runs find."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC

import polars as pl
import pytest
from anchors_support import open_alert_anchors
from bench_support import scale
from conftest import sim_frame
from detection_support import evening

from alerts.anchors import Anchored
from alerts.context import BaselineAnchor, RuleContext
from alerts.registry import ProcessDefinition
from alerts.rules import RULES
from ingest.simulate import Anomalies, Bottleneck, ReworkLoop
from mining.frame import Events, prepare
from schemas.alerts import Finding

pytestmark = pytest.mark.bench
DAYS = max(100, round(250 * scale()))  # business days of onboarding, 40 new cases a day
ROUND_TARGET_S = 2.0  # issue 15: an alert round of one process


def _round(definition: ProcessDefinition, events: Events, anchors: dict[str, BaselineAnchor],
           restrict: bool) -> tuple[float, list[Finding]]:
    """One round of every rule (its derived tables included): seconds, findings."""
    started = time.perf_counter()
    ctx = RuleContext(definition, events, evening(DAYS - 1), anchors)
    found: list[Finding] = []
    for rule in RULES:
        run: Callable[[RuleContext], list[Finding]] = rule.run
        found += (rule.run.findings(ctx, restrict) if isinstance(rule.run, Anchored)
                  else run(ctx))
    return time.perf_counter() - started, found


def test_an_open_alert_costs_its_own_keys_not_a_whole_run() -> None:
    """A year of onboarding with a slowed Risk review and a new loop, about 40 open alerts on as
    many days: best of three rounds, without anchors, with whole anchored runs, with scoped
    ones; the scoped round finds the same and stays within the target."""
    frame, truth = sim_frame("onboarding", 40 * DAYS, 3, Anomalies(
        bottleneck=Bottleneck("Risk review", evening(DAYS - 60).replace(hour=9), 10.0),
        rework=ReworkLoop(("KYC/AML screening", "Risk review"), 0.1,
                          since=evening(DAYS - 40).replace(hour=9))))
    now = evening(DAYS - 1)
    definition = ProcessDefinition("onboarding", end_activities=tuple(truth["end_activities"]))
    anchors = open_alert_anchors(frame, "onboarding", now, evening(DAYS - 65).date(), definition)
    events = prepare(frame.filter(pl.col("timestamp") <= now.astimezone(UTC)))
    times: dict[str, float] = {}
    results: dict[str, list[Finding]] = {}
    for name, pinned, restrict in (("no anchors", {}, True), ("whole runs", anchors, False),
                                   ("scoped runs", anchors, True)):
        best = min(_round(definition, events, pinned, restrict) for _ in range(3))
        times[name], results[name] = best
    print(f"\nonboarding, {DAYS} business days, {events.df.height} events, {len(anchors)} open "
          f"alerts on {len(set(anchors.values()))} days: round "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in times.items()))
    assert results["scoped runs"] == results["whole runs"]
    assert times["scoped runs"] < times["whole runs"]
    assert times["scoped runs"] <= ROUND_TARGET_S
