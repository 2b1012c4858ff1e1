"""An anchored run judges only its keys (``alerts.context.Scope``) and finds for them exactly
what a run over every subject finds (rules on a simulated process, no I/O)."""

from __future__ import annotations

from datetime import UTC

import polars as pl
import pytest
from anchors_support import open_alert_anchors
from conftest import sim_frame
from detection_support import evening

from alerts.anchors import Anchored
from alerts.context import RuleContext, Scope
from alerts.registry import ProcessDefinition
from alerts.rules import RULES
from ingest.simulate import Anomalies, Bottleneck, ReworkLoop
from mining.frame import prepare
from schemas.alerts import alert_key

NOW = evening(95)


@pytest.fixture(scope="module")
def context() -> RuleContext:
    """Onboarding over 95 business days: the wait before Risk review ten times as long from day
    50, a KYC/AML screening -> Risk review loop in a tenth of the cases from day 60; the alerts
    of a process with many open ones anchored from day 45 on."""
    frame, truth = sim_frame("onboarding", 40 * 96, 3, Anomalies(
        bottleneck=Bottleneck("Risk review", evening(50).replace(hour=9), 10.0),
        rework=ReworkLoop(("KYC/AML screening", "Risk review"), 0.1,
                          since=evening(60).replace(hour=9))))
    definition = ProcessDefinition("onboarding", end_activities=tuple(truth["end_activities"]))
    anchors = open_alert_anchors(frame, "onboarding", NOW, evening(45).date(), definition)
    events = prepare(frame.filter(pl.col("timestamp") <= NOW.astimezone(UTC)))
    return RuleContext(definition, events, NOW, anchors)


def test_anchored_runs_find_for_their_keys_what_a_whole_run_finds(context: RuleContext) -> None:
    """Every rule with a baseline, its keys anchored on many days: the findings with each
    anchored run told its keys equal those with each anchored run judging every subject, and
    the anchored keys do produce findings (the wait before Risk review, its hand-offs, the
    loop)."""
    anchored = [rule for rule in RULES if isinstance(rule.run, Anchored)]
    assert {rule.name for rule in anchored} >= {"bottleneck", "throughput", "handoff", "rework",
                                                 "conformance"}
    keys = set(context.anchors)
    found = 0
    for rule in anchored:
        assert isinstance(rule.run, Anchored)
        scoped = rule.run.findings(context)
        whole = rule.run.findings(context, restrict=False)
        assert scoped == whole, rule.name
        found += sum(f.key in keys for f in scoped)
    assert found >= 3
    assert "bottleneck/onboarding/wait before Risk review" in keys


def test_a_scope_names_the_subjects_of_its_keys() -> None:
    """A scope judges a subject with a key of its own or of one of its segments, tells whether
    a segment of it is judged, and judges every subject without keys."""
    keys = {alert_key("bottleneck", "p", "wait before A", {"region": "east"}),
            alert_key("bottleneck", "p", "wait before B -> C")}
    scope = Scope("bottleneck", "p", frozenset(keys))
    assert scope.subject("wait before A") and scope.segmented("wait before A")
    assert scope.subject("wait before B -> C") and not scope.segmented("wait before B -> C")
    assert not scope.subject("wait before D") and not scope.subject("wait before B")
    assert Scope("bottleneck", "p").subject("anything")
