"""Tests for the derived tables (alerts.facts) and the bottleneck, throughput and hand-off rules."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from conftest import event_frame

from alerts.calendar import WorkCalendar
from alerts.changepoint import Drift, DriftSettings, Sample
from alerts.context import RuleContext
from alerts.facts import Facts, segment_column
from alerts.registry import ProcessDefinition
from alerts.rules.handoff import handoff
from alerts.rules.throughput import entered, throughput
from alerts.rules.waits import Hit, Window, bottleneck, change_text, evidence, severity
from alerts.thresholds import RuleSettings
from ingest.simulate import Anomalies, Bottleneck, Simulation, simulate
from mining.frame import Events, frame_from_rows, prepare
from schemas.alerts import Severity

AMS = ZoneInfo("Europe/Amsterdam")
CALENDAR = WorkCalendar()  # Mon-Fri 09:00-17:30 Amsterdam, no holidays
ONSET = datetime(2026, 3, 30, 9, 0, tzinfo=AMS)  # a Monday


def events_of(sim: Simulation) -> Events:
    """The simulated events as the store hands them to mining (arrival order = list order)."""
    return prepare(event_frame(sim.events))


def last_arrival(sim: Simulation) -> datetime:
    """When the last case arrived: the end of the simulated period (later events drain it)."""
    return max(e.timestamp for e in sim.events if e.event_id.endswith("-1"))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in March 2026, Amsterdam time (the 6th is a Friday, the 9th a Monday)."""
    return datetime(2026, 3, day, hour, minute, tzinfo=AMS)


def small_log() -> Events:
    """Three cases: one finished (A, B, C), one waiting after B, one with start/complete events."""
    attrs = json.dumps({"region": "east", "it's": "x"})
    rows = [
        {"case_id": "c1", "activity": "A", "timestamp": at(6, 17), "team": "front", "attributes": attrs},
        {"case_id": "c1", "activity": "B", "timestamp": at(9, 10), "team": "back", "attributes": attrs},
        {"case_id": "c1", "activity": "C", "timestamp": at(9, 11), "team": "back", "attributes": attrs},
        {"case_id": "c2", "activity": "A", "timestamp": at(9, 9), "team": "front"},
        {"case_id": "c2", "activity": "B", "timestamp": at(10, 9), "team": "back"},
        {"case_id": "c3", "activity": "A", "timestamp": at(10, 9), "team": "front"},
        {"case_id": "c3", "activity": "B", "timestamp": at(10, 12), "lifecycle": "start", "team": "back"},
        {"case_id": "c3", "activity": "B", "timestamp": at(10, 13), "team": "back"},
        {"case_id": "c3", "activity": "C", "timestamp": at(20, 9), "team": "back"},  # after "now"
    ]
    return prepare(frame_from_rows([{**r, "seq": i} for i, r in enumerate(rows)]))


def test_waits_are_business_seconds_between_completions_up_to_now() -> None:
    """Friday 17:00 -> Monday 10:00 waits 1.5 business hours; start events and events after
    now are left out; the target event's segment attribute is decoded."""
    facts = Facts.build(small_log(), CALENDAR, at(11, 9), ("C",), ("region", "it's"))
    waits = facts.waits.sort("case_id", "ended_at")
    assert waits.select("case_id", "source", "target", "wait_s").rows() == [
        ("c1", "A", "B", 5400.0), ("c1", "B", "C", 3600.0),
        ("c2", "A", "B", 8.5 * 3600), ("c3", "A", "B", 4 * 3600.0)]
    assert waits["source_team"].to_list()[0] == "front" and waits["target_team"].to_list()[0] == "back"
    assert waits[segment_column("region")].to_list() == ["east", "east", None, None]
    assert waits[segment_column("it's")].to_list()[0] == "x"
    assert waits["ended_day"].to_list()[0].isoformat() == "2026-03-09"


def test_cases_and_open_cases_use_the_end_activities() -> None:
    """A case whose last activity is an end activity is closed; the others are open, idle in
    business seconds since their last event."""
    facts = Facts.build(small_log(), CALENDAR, at(11, 9), ("C",))
    cases = {r["case_id"]: r for r in facts.cases.iter_rows(named=True)}
    assert cases["c1"]["closed"] and cases["c1"]["duration_s"] == 9000.0
    assert not cases["c2"]["closed"] and cases["c3"]["last_activity"] == "B"
    idle = dict(facts.open_cases.select("case_id", "idle_s").iter_rows())
    assert idle == {"c2": 8.5 * 3600, "c3": 4.5 * 3600}
    assert not facts.end_activities_learned


def test_a_now_in_the_spring_forward_gap_is_read_not_refused() -> None:
    """02:30 on 29 March 2026 does not exist in Amsterdam (clocks jump from 02:00 to 03:00):
    such a "now" is read as Python reads it (01:30 UTC, a Sunday), and the open case waiting
    since Tuesday 10 March 09:00 has been idle 14 whole business days."""
    facts = Facts.build(small_log(), CALENDAR, datetime(2026, 3, 29, 2, 30, tzinfo=AMS), ("C",))
    assert dict(facts.open_cases.select("case_id", "idle_s").iter_rows()) == {
        "c2": 14 * 8.5 * 3600}


def test_end_activities_are_learned_when_none_are_configured() -> None:
    """Without configured end activities, those where finished cases end and stay ended are
    learned (and say so); one finished case alone teaches none."""
    rows = [{"case_id": f"c{i}", "activity": a, "timestamp": at(2, 9) + timedelta(hours=h)}
            for i in range(6) for h, a in enumerate("ABC")]
    rows += [{"case_id": "open", "activity": "A", "timestamp": at(9, 9)}]
    facts = Facts.build(prepare(frame_from_rows(rows)), CALENDAR, at(11, 9))
    assert facts.end_activities == ("C",) and facts.end_activities_learned
    assert Facts.build(small_log(), CALENDAR, at(11, 9)).end_activities == ()


@pytest.fixture(scope="module")
def slow_risk_review() -> tuple[Simulation, RuleContext]:
    """Onboarding where the wait before Risk review is five times as long from ONSET on."""
    sim = simulate("onboarding", 3600, seed=21,
                   anomalies=Anomalies(bottleneck=Bottleneck("Risk review", ONSET, 5.0)))
    return sim, RuleContext(ProcessDefinition("onboarding"), events_of(sim), last_arrival(sim))


def test_bottleneck_names_activity_since_and_evidence(
        slow_risk_review: tuple[Simulation, RuleContext]) -> None:
    """One finding for Risk review, in the issue's terms, with both windows, the waiting work
    and the slowed cases."""
    sim, ctx = slow_risk_review
    [finding] = bottleneck(ctx)
    assert finding.subject == "wait before Risk review" and finding.segment == {}
    assert re.fullmatch(r"Wait before Risk review: \d+\.\d business days since 2026-03-\d\d "
                        r"\(baseline \d\.\d business hours\)", finding.summary), finding.summary
    assert finding.since is not None and abs(CALENDAR.count_business_days(ONSET.date(), finding.since)) <= 3
    evidence = finding.evidence
    assert evidence["recent"]["median_days"] >= 2 * evidence["baseline"]["median_days"]
    assert evidence["recent"]["cases"] >= 20 and evidence["baseline"]["cases"] >= 20
    assert evidence["since"] == finding.since.isoformat() and evidence["p_value"] < 0.01
    assert evidence["window"]["to"] == CALENDAR.business_day_of(ctx.now).isoformat()
    assert evidence["waiting_now"]["cases"] >= evidence["waiting_now"]["overdue"] > 0
    assert (finding.severity == Severity.CRITICAL) == (evidence["ratio"] >= 4.0)
    slowed = set(sim.ground_truth["anomalies"]["bottleneck"]["cases"])
    assert 0 < len(finding.cases) <= 50 and set(finding.cases) <= slowed
    assert finding.key == "bottleneck/onboarding/wait before Risk review"
    assert json.loads(json.dumps(evidence)) == evidence  # plain JSON, as the chat payloads need


def test_handoff_names_the_teams(slow_risk_review: tuple[Simulation, RuleContext]) -> None:
    """The slower Risk review shows as the kyc -> risk hand-off, naming its transitions."""
    _, ctx = slow_risk_review
    subjects = {f.subject: f for f in handoff(ctx)}
    assert "back-office/kyc -> back-office/risk" in subjects
    finding = subjects["back-office/kyc -> back-office/risk"]
    assert finding.summary.startswith("Hand-off back-office/kyc -> back-office/risk: ")
    assert finding.evidence["transitions"][0] == {
        "source": "KYC/AML screening", "target": "Risk review",
        "count": finding.evidence["transitions"][0]["count"]}
    assert all(f.subject.endswith("back-office/risk") for f in subjects.values())


def test_throughput_speaks_in_business_day_ranges() -> None:
    """Cases slowed at a step most of them pass read as "now take a-b business days (p10-p90),
    they took c-d business days until <since>", since within 3 business days of the onset."""
    sim = simulate("onboarding", 4000, seed=4,
                   anomalies=Anomalies(bottleneck=Bottleneck("Risk review", ONSET, 10.0)))
    ctx = RuleContext(ProcessDefinition("onboarding"), events_of(sim), last_arrival(sim))
    [finding] = throughput(ctx)
    assert re.fullmatch(r"onboarding cases now take [\d.]+-[\d.]+ business days \(p10-p90\), "
                        r"they took [\d.]+-[\d.]+ business days until 2026-\d\d-\d\d",
                        finding.summary), finding.summary
    assert finding.subject == "case duration" and finding.since is not None
    assert abs(CALENDAR.count_business_days(ONSET.date(), finding.since)) <= 3
    assert finding.summary.endswith(f"until {finding.since.isoformat()}")
    assert finding.evidence["recent"]["p10_days"] > finding.evidence["baseline"]["p10_days"]


def test_cases_are_dated_by_the_wait_where_they_lost_most_time() -> None:
    """Re-dating for "since": each case by the day it entered its wait with the largest excess
    over that transition's usual wait (median before the given day), not its longest wait; an
    unseen transition counts in full; a case without a wait keeps its last day."""
    def case(name: str, *steps: tuple[str, datetime]) -> list[dict[str, object]]:
        return [{"case_id": name, "activity": a, "timestamp": t, "team": "t"} for a, t in steps]
    rows = (case("u", ("A", at(2, 9)), ("B", at(2, 10)), ("C", at(3, 17)))  # usual: 1 h, 15.5 h
            + case("v", ("A", at(9, 9)), ("B", at(10, 9)), ("C", at(11, 15)))  # +7.5 h, -1 h
            + case("x", ("A", at(6, 9)), ("B", at(9, 10)), ("C", at(16, 9)))  # +8.5 h, +26 h
            + case("y", ("A", at(5, 9)), ("B", at(10, 9)), ("C", at(10, 10)))  # +24.5 h, -14.5 h
            + case("z", ("A", at(6, 16)), ("D", at(9, 9, 30)), ("C", at(11, 9)))  # unseen: 2, 16.5 h
            + case("s", ("C", at(12, 9))))
    facts = Facts.build(prepare(frame_from_rows([{**r, "seq": i} for i, r in enumerate(rows)])),
                        CALENDAR, at(20, 9), ("C",))
    cases = facts.cases.filter(facts.cases["closed"])
    days = dict(zip(cases["case_id"], entered(facts, cases, at(4, 9).date()), strict=True))
    assert {k: d.day for k, d in days.items()} == {"u": 2, "v": 9, "x": 9, "y": 5, "z": 9, "s": 12}


def test_disabled_rules_and_no_events_say_nothing(
        slow_risk_review: tuple[Simulation, RuleContext]) -> None:
    """A rule switched off in the config, or a process without events, gives no finding."""
    _, ctx = slow_risk_review
    off = RuleSettings().merged({r: {"enabled": False} for r in ("bottleneck", "throughput", "handoff")})
    quiet = RuleContext(ProcessDefinition("onboarding", rules=off), ctx.events, ctx.now)
    assert bottleneck(quiet) == throughput(quiet) == handoff(quiet) == []
    empty = RuleContext(ProcessDefinition("onboarding"), prepare(frame_from_rows([])), ctx.now)
    assert bottleneck(empty) == throughput(empty) == handoff(empty) == []


def test_a_wait_against_a_baseline_near_zero_is_said_in_absolute_terms() -> None:
    """A wait that went from about 20 seconds (median) to 4.6 business days: the sentence says
    how much longer and the baseline in minutes, never a ratio (the evidence's ratio is null);
    critical as 4.6 days is over critical_ratio (4) times the practical size (1 business day)."""
    day = CALENDAR.day_seconds
    drift = Drift(ONSET.date(), Sample(40, 0.0, 20 / day, 0.01), Sample(30, 2.0, 4.6, 9.0), 1e-6,
                  np.arange(30))
    settings = DriftSettings(today=ONSET.date(), recent_from=ONSET.date(), baseline_days=60,
                             min_cases=20, min_ratio=2.0, min_increase=1.0)
    window = Window(settings, day)
    text = change_text(drift, day, {})
    assert text == ("4.6 business days since 2026-03-30, 4.6 business days more than its "
                    "baseline of under a minute")
    assert "x" not in text and "baseline 0.0" not in text
    facts = evidence(Hit(drift, pl.DataFrame(), day), window)
    assert facts["ratio"] is None and facts["increase_days"] == 4.6
    json.loads(json.dumps(facts), parse_constant=lambda c: pytest.fail(c))
    assert severity(RuleSettings().bottleneck, drift, window) is Severity.CRITICAL
    slower = Drift(ONSET.date(), Sample(40, 0.0, 0.5, 1.0), Sample(30, 2.0, 1.6, 3.0), 1e-6,
                   np.arange(30))
    assert change_text(slower, day, {"region": "east"}) == (
        "1.6 business days for region=east since 2026-03-30 (baseline 4.2 business hours)")
    assert severity(RuleSettings().bottleneck, slower, window) is Severity.WARNING

