"""The rework rule on small hand-built logs: redone activities, new loops, repeated requests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pydantic import ValidationError

from alerts.calendar import WorkCalendar
from alerts.context import RuleContext
from alerts.duration import parse_duration
from alerts.registry import ProcessDefinition
from alerts.rules.rework import change_point, rework, window_start
from alerts.thresholds import RuleSettings
from mining.frame import frame_from_rows, prepare
from schemas.alerts import Finding, Severity

AMS = ZoneInfo("Europe/Amsterdam")
CAL = WorkCalendar()
NOW = datetime(2026, 3, 27, 18, 0, tzinfo=AMS)  # a Friday evening
SETTINGS = {"recent": "10 business days", "baseline": "30 days", "min_cases": 10}


def day(n: int) -> datetime:
    """09:00 on the n-th business day before NOW's day (1 = Thursday 2026-03-26)."""
    first = CAL.add_business_days(NOW.date(), -n)
    return datetime.combine(first, datetime.min.time(), tzinfo=AMS).replace(hour=9)


def rows(cases: Sequence[tuple[str, datetime, str]], **who: str) -> list[dict[str, Any]]:
    """Event rows: each case's activities (comma separated) an hour apart from its start; the
    resource of each execution is ``who[activity]`` or a fresh person per execution."""
    out: list[dict[str, Any]] = []
    for case_id, start, trace in cases:
        for i, activity in enumerate(trace.split(",")):
            resource = who.get(activity, f"u{len(out)}")
            out.append({"case_id": case_id, "activity": activity, "resource": resource,
                        "timestamp": start + timedelta(hours=i)})
    return out


def evaluate(events: list[dict[str, Any]], now: datetime = NOW, **overrides: Any) -> list[Finding]:
    """The rework rule's findings for a process named "onboarding" with small windows."""
    rules = RuleSettings().merged({"rework": {**SETTINGS, **overrides}})
    process = ProcessDefinition(name="onboarding", rules=rules)
    return rework(RuleContext(process, prepare(frame_from_rows(events)), now))


def spread(prefix: str, days: range, traces: Sequence[str]) -> list[tuple[str, datetime, str]]:
    """One case per trace, started on the given business days in turn (cycling)."""
    ds = list(days)
    return [(f"{prefix}{i:03d}", day(ds[i % len(ds)]), t) for i, t in enumerate(traces)]


BASELINE = spread("b", range(12, 30), ["Apply,Check,Decide"] * 38 + ["Apply,Check,Check,Decide"] * 2)


def test_window_start_counts_business_days_back_to_midnight() -> None:
    """10 business days before a Friday evening start at local midnight two weeks earlier;
    wall-clock windows are subtracted as they are."""
    assert window_start(CAL, NOW, parse_duration("10 business days")) == datetime(
        2026, 3, 13, 0, 0, tzinfo=AMS)
    assert window_start(CAL, NOW, parse_duration("30 days")) == NOW - timedelta(days=30)


def test_change_point_is_the_first_hit_of_the_shifted_run() -> None:
    """A Bernoulli CUSUM places the change at the first hit of the run where the rate jumped."""
    hits = np.array([False] * 60 + [True, False, True, True, False, True, True, True] * 3)
    p0, p1 = np.full(hits.size, 0.05), np.full(hits.size, 0.3)
    assert change_point(hits, p0, p1) == 60
    assert change_point(np.zeros(30, dtype=bool), np.full(30, 0.05), np.full(30, 0.3)) is None


def test_activity_redone_far_more_than_baseline_fires_with_repeat_and_redo() -> None:
    """Check redone in 8 of 20 recent cases against 5 % in the baseline fires once, says since
    when (the day of the first recent case that redid it), its share of the 17 cases started
    since, and how many were repeats vs redos."""
    redo = [(f"r{i:03d}", day(6 - i // 3), "Apply,Check,Check,Decide") for i in range(8)]
    plain = spread("q", range(1, 10), ["Apply,Check,Decide"] * 12)
    events = rows(BASELINE + plain) + rows(redo[:5], Check="u-1") + rows(redo[5:])
    [finding] = evaluate(events)
    assert finding.subject == "rework at Check" and finding.severity is Severity.WARNING
    assert finding.since == day(6).date()
    assert finding.summary == (
        "Check done again in 47.1% of onboarding cases started since 2026-03-19 (8 of 17; "
        "baseline 5.0%): 5 repeated by the same person, 3 redone by someone else")
    assert finding.cases == tuple(sorted(c for c, _, _ in redo))
    assert finding.evidence["repeat_cases"] == 5 and finding.evidence["redo_cases"] == 3


def test_same_share_as_baseline_stays_quiet() -> None:
    """The recent cases redo Check as often as the baseline did: no finding."""
    recent = spread("q", range(1, 10), ["Apply,Check,Decide"] * 19 + ["Apply,Check,Check,Decide"])
    assert evaluate(rows(BASELINE + recent)) == []


def test_share_above_max_is_a_cap_finding_not_a_drift_and_dated_from_the_first_case() -> None:
    """60 % of cases redo Check, in the baseline too: above max_share (0.3) it is a finding of
    its own, worded against the cap (no baseline, no increase), since the first day from which
    the share has stayed above the cap (here the first case), with counts of that one set."""
    traces = ["Apply,Check,Check,Decide"] * 3 + ["Apply,Check,Decide"] * 2
    events = rows(spread("b", range(12, 30), traces * 8) + spread("q", range(1, 10), traces * 4))
    [finding] = evaluate(events)
    assert finding.subject == "rework at Check above the 30% cap" and finding.opens
    assert finding.since == day(29).date()
    assert finding.summary == (
        f"Check done again in 60.0% of onboarding cases started since {day(29).date()} "
        "(36 of 60), above the 30% cap: 0 repeated by the same person, 36 redone by someone else")
    assert "baseline" not in finding.summary


def test_too_few_recent_cases_say_nothing() -> None:
    """Fewer recent cases than min_cases: nothing is judged, however much rework they show."""
    recent = spread("q", range(1, 4), ["Apply,Check,Check,Check,Decide"] * 6)
    assert evaluate(rows(BASELINE + recent)) == []


def test_loop_that_newly_appeared_fires_from_the_day_it_appeared() -> None:
    """Six recent cases go Check -> Verify -> Check, which no baseline case did: one loop finding
    (the activities it explains are not reported again), since the first such case's day."""
    looped = [(f"r{i:03d}", day(5 - i // 2), "Apply,Check,Verify,Check,Verify,Decide")
              for i in range(6)]
    plain = spread("q", range(1, 10), ["Apply,Check,Verify,Decide"] * 14)
    base = spread("b", range(12, 30), ["Apply,Check,Verify,Decide"] * 40)
    [finding] = evaluate(rows(base + plain + looped))
    assert finding.subject == "loop Check -> Verify" and finding.since == day(5).date()
    assert finding.summary == ("New rework loop Check -> Verify -> Check: 6 onboarding cases "
                               "since 2026-03-20 (37.5% of the cases started since; baseline none)")
    assert finding.cases == tuple(c for c, _, _ in looped)


def test_loop_known_from_the_baseline_is_not_new() -> None:
    """The same loop in the baseline at the same share is no finding."""
    looped = "Apply,Check,Verify,Check,Verify,Decide"
    base = spread("b", range(12, 30), ["Apply,Check,Verify,Decide"] * 28 + [looped] * 12)
    recent = spread("q", range(1, 10), ["Apply,Check,Verify,Decide"] * 14 + [looped] * 6)
    assert [f for f in evaluate(rows(base + recent)) if f.opens] == []


def test_customer_asked_twice_for_documents_fires_where_baseline_had_none() -> None:
    """Five recent cases ask for documents twice, no baseline case did: a repeated-request
    finding in the customer's terms, next to the loop it makes."""
    asked = [(f"r{i:03d}", day(4), "Apply,Request documents,Documents received,"
              "Request documents,Documents received,Decide") for i in range(5)]
    once = spread("q", range(1, 10), ["Apply,Request documents,Documents received,Decide"] * 15)
    base = spread("b", range(12, 30), ["Apply,Request documents,Documents received,Decide"] * 40)
    found = {f.subject: f for f in evaluate(rows(base + once + asked))}
    assert set(found) == {"repeated request: Request documents",
                          "loop Documents received -> Request documents"}
    request = found["repeated request: Request documents"]
    assert request.summary == ("customers asked again for documents: 5 cases since 2026-03-23 "
                               "(38.5% of the cases started since; baseline 0.0%)")
    assert request.cases == tuple(c for c, _, _ in asked)


def test_fewer_repeated_requests_than_the_minimum_are_not_said() -> None:
    """With min_repeat_requests = 6 and min_loop_cases = 6, five repeated requests open neither a
    repeated-request nor a loop alert: they are only above the clearing level (4.8 cases), which
    holds an open alert, and they explain the redone receipt step, which is not said apart."""
    asked = [(f"r{i:03d}", day(4), "Apply,Ask for payslip,Payslip received,Ask for payslip,"
              "Payslip received,Decide") for i in range(5)]
    once = spread("q", range(1, 10), ["Apply,Ask for payslip,Payslip received,Decide"] * 15)
    base = spread("b", range(12, 30), ["Apply,Ask for payslip,Payslip received,Decide"] * 40)
    events = rows(base + once + asked)
    assert {f.subject for f in evaluate(events)} >= {"repeated request: Ask for payslip"}
    raised = evaluate(events, min_repeat_requests=6, min_loop_cases=6)
    assert [f.subject for f in raised if f.opens] == []
    assert {f.subject for f in raised} == {"repeated request: Ask for payslip",
                                           "loop Ask for payslip -> Payslip received"}
    assert [f.subject for f in evaluate(events, min_repeat_requests=7, min_loop_cases=7)] == [
        "rework at Payslip received"]


def test_request_activities_can_be_named() -> None:
    """request_activities names which activities ask the customer; others are not requests."""
    asked = [(f"r{i:03d}", day(4), "Apply,Call customer,Decide,Call customer,Close")
             for i in range(6)]
    once = spread("q", range(1, 10), ["Apply,Call customer,Decide,Close"] * 14)
    base = spread("b", range(12, 30), ["Apply,Call customer,Decide,Close"] * 40)
    events = rows(base + once + asked)
    assert "repeated request: Call customer" not in {f.subject for f in evaluate(events)}
    named = {f.subject: f for f in evaluate(events, request_activities=["Call customer"])}
    assert named["repeated request: Call customer"].summary.startswith(
        "Call customer asked again: 6 cases since 2026-03-23")


def _refuse(literal: str) -> Any:
    raise ValueError(f"not JSON: {literal}")


def test_evidence_against_a_zero_baseline_is_strict_json() -> None:
    """A loop and a repeated request the baseline never had (baseline share 0) fire with finite
    figures: their evidence, written by Python's json, is read by a strict parser (no NaN or
    Infinity), and z is a large finite number."""
    asked = [(f"r{i:03d}", day(4), "Apply,Request documents,Documents received,"
              "Request documents,Documents received,Decide") for i in range(5)]
    once = spread("q", range(1, 10), ["Apply,Request documents,Documents received,Decide"] * 15)
    base = spread("b", range(12, 30), ["Apply,Request documents,Documents received,Decide"] * 40)
    found = evaluate(rows(base + once + asked))
    assert {f.subject for f in found} == {"repeated request: Request documents",
                                          "loop Documents received -> Request documents"}
    for f in found:
        assert f.evidence["baseline_share"] == 0
        parsed = json.loads(json.dumps(dict(f.evidence)), parse_constant=_refuse)
        assert 3 <= parsed["z"] < 1e6


def test_share_below_its_baseline_is_never_said_as_an_increase() -> None:
    """Check redone in 32 % of recent cases against 40 % in the baseline: above the 30 % cap, so
    a cap finding, but no "rework at Check" drift and no sentence implying an increase."""
    base = spread("b", range(12, 30), ["Apply,Check,Check,Decide"] * 16 + ["Apply,Check,Decide"] * 24)
    recent = spread("q", range(1, 10), ["Apply,Check,Check,Decide"] * 8 + ["Apply,Check,Decide"] * 17)
    found = evaluate(rows(base + recent))
    assert [f.subject for f in found] == ["rework at Check above the 30% cap"]
    [cap] = found
    assert "above the 30% cap" in cap.summary and "baseline" not in cap.summary
    stated = cap.evidence["since_cases_hit"] / cap.evidence["since_cases"]
    assert f"{stated:.1%}" in cap.summary and stated > 0.3


def test_counts_in_one_sentence_come_from_the_cases_it_is_about() -> None:
    """Recent cases that redid Check by the same person before the change are not counted in
    the sentence about the cases started since the change: repeats and redos add up to the
    cases it names (each case redoes Check once), not to the whole recent window's."""
    early = [(f"e{i:03d}", day(9), "Apply,Check,Check,Decide") for i in range(2)]
    redo = [(f"r{i:03d}", day(5 - i // 3), "Apply,Check,Check,Decide") for i in range(9)]
    plain = (spread("q", range(6, 10), ["Apply,Check,Decide"] * 24)
             + spread("p", range(1, 6), ["Apply,Check,Decide"] * 8))
    events = (rows(BASELINE + plain) + rows(early, Check="u-0") + rows(redo[:4], Check="u-1")
              + rows(redo[4:]))
    [finding] = evaluate(events)
    e = finding.evidence
    assert finding.subject == "rework at Check" and finding.since == day(5).date()
    assert e["since_cases_hit"] == 9 and e["recent_cases_hit"] == 11
    assert (e["repeat_cases"], e["redo_cases"]) == (4, 5)
    assert f"(9 of {e['since_cases']};" in finding.summary
    assert "4 repeated by the same person, 5 redone by someone else" in finding.summary


def test_a_loop_in_too_small_a_share_of_the_cases_is_not_said() -> None:
    """Minimum support in share: a new loop in 5 of the 5 + 385 cases started since it appeared
    (1.3 %) is below min_support_share (2 %) and not said; lowering it to 1 % says it."""
    looped = [(f"r{i:03d}", day(5), "Apply,Check,Verify,Check,Verify,Decide") for i in range(5)]
    plain = spread("q", range(1, 10), ["Apply,Check,Verify,Decide"] * 693)
    base = spread("b", range(12, 30), ["Apply,Check,Verify,Decide"] * 40)
    events = rows(base + plain + looped)
    assert [f for f in evaluate(events) if f.subject.startswith("loop")] == []
    assert [f.subject for f in evaluate(events, min_support_share=0.01)] == ["loop Check -> Verify"]


def test_clearing_thresholds_must_be_below_the_firing_ones() -> None:
    """clear_z at or above the firing z (3) is a config error naming the key."""
    with pytest.raises(ValidationError, match="clear_z"):
        RuleSettings().merged({"rework": {"clear_z": 3.0}})
