"""run_rules: every enabled rule over one process; a rule that cannot judge the process's data
is logged and skipped while the others still run, and only errors of the hierarchy are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from alerts.context import Rule, RuleContext
from alerts.evaluate import run_rules
from alerts.registry import ProcessDefinition
from alerts.rules import RULES
from alerts.thresholds import NoOwner
from mining.frame import frame_from_rows, prepare
from schemas.alerts import Finding

YEAR_ONE = datetime(1, 1, 8, tzinfo=UTC)
"""Events a source dated near year 1 (a zero date mapped as it was): a rule's baseline window
reaches before the first date there is."""


def year_one_events() -> list[dict[str, Any]]:
    """Thirty claims cases of three steps an hour apart, handed from the front office to the
    back office, in the first weeks of year 1."""
    return [{"case_id": f"c{k // 3}", "activity": ("Register", "Assess", "Pay")[k % 3],
             "team": "front" if k % 3 == 0 else "back",
             "timestamp": YEAR_ONE + timedelta(hours=k)} for k in range(90)]


def test_a_rule_that_cannot_judge_the_data_is_reported_and_the_others_run() -> None:
    """The drift and rework rules cannot place their baseline before year 1: each is logged
    ("rule failed", naming rule, process and why) and skipped, while no_events still finds the
    feed quiet and the governance rules an unowned, never reviewed process."""
    process = ProcessDefinition("claims", end_activities=("Pay",))
    events = prepare(frame_from_rows(year_one_events()))
    with capture_logs() as logged:
        found = run_rules(process, events, YEAR_ONE + timedelta(days=40))
    assert [f.rule for f in found] == ["no_events", "stale_review", "no_owner"]
    failed = {e["rule"]: e for e in logged if e["event"] == "rule failed"}
    assert sorted(failed) == ["bottleneck", "handoff", "rework", "throughput"]
    assert all(f["process"] == "claims" and f["error"].endswith("before year 1")
               for f in failed.values())


def test_a_bug_in_a_rule_is_not_swallowed() -> None:
    """An error outside the hierarchy (a rule's bug, here a ValueError) propagates: run_rules
    skips only rules that report why they cannot judge the data."""
    def broken(ctx: RuleContext) -> list[Finding]:
        raise ValueError("missing")

    rules = (*RULES[:-1], Rule(name="no_owner", settings=NoOwner, run=broken))
    process = ProcessDefinition("claims")
    with pytest.raises(ValueError, match="missing"):
        run_rules(process, prepare(frame_from_rows(year_one_events())),
                  YEAR_ONE + timedelta(days=40), rules)
