"""Tests for the synthetic case generator and its injected anomalies."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, time
from itertools import pairwise
from pathlib import Path
from statistics import mean
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import SimulationError
from ingest.simulate import (
    PROCESSES,
    Anomalies,
    Bottleneck,
    ReworkLoop,
    StuckCases,
    activities,
    simulate,
    write_ground_truth,
)
from schemas.event import CaseEvent, to_time_us

AMS = ZoneInfo("Europe/Amsterdam")
REQUEST, RECEIVED = "Request missing documents", "Documents received"


def by_case(events: list[CaseEvent]) -> dict[str, list[CaseEvent]]:
    """Each case's events in time order."""
    cases: dict[str, list[CaseEvent]] = {}
    for event in sorted(events, key=lambda e: e.time_us):
        cases.setdefault(event.case_id, []).append(event)
    return cases


def paths(events: list[CaseEvent]) -> dict[str, list[str]]:
    """Each case's completed activities in time order."""
    return {case: [e.activity for e in evs if e.lifecycle == "complete"]
            for case, evs in by_case(events).items()}


def runs(path: list[str], loop: list[str]) -> int:
    """Consecutive, non-overlapping occurrences of `loop` in `path`."""
    count, i = 0, 0
    while i <= len(path) - len(loop):
        if path[i:i + len(loop)] == loop:
            count, i = count + 1, i + len(loop)
        else:
            i += 1
    return count


def test_same_seed_gives_same_simulation() -> None:
    """The same arguments give identical events and ground truth; another seed differs."""
    anomalies = Anomalies(rework=ReworkLoop((REQUEST, RECEIVED), 0.2),
                          stuck=StuckCases("Risk review", 0.1))
    first = simulate("onboarding", 120, seed=7, anomalies=anomalies)
    second = simulate("onboarding", 120, seed=7, anomalies=anomalies)
    assert first == second
    assert simulate("onboarding", 120, seed=8, anomalies=anomalies).events != first.events


@settings(max_examples=25, deadline=None)
@given(process=st.sampled_from(PROCESSES), seed=st.integers(0, 2**32),
       start=st.sampled_from([datetime(2026, 1, 5, 9, 0), datetime(2026, 3, 27, 17, 0),
                              datetime(2026, 10, 24, 23, 0, tzinfo=AMS)]),
       with_start_events=st.booleans())
def test_times_are_working_hours_and_increase_within_a_case(
        process: str, seed: int, start: datetime, with_start_events: bool) -> None:
    """Every event falls Mon-Fri 09:00-17:30 Amsterdam time, strictly later than its case's last."""
    sim = simulate(process, 30, seed=seed, start=start, with_start_events=with_start_events)
    for event in sim.events:
        local = event.timestamp.astimezone(AMS)
        assert local.weekday() < 5, event
        assert time(9, 0) <= local.time() <= time(17, 30), event
    for events in by_case(sim.events).values():
        stamps = [e.time_us for e in events]
        assert all(a < b for a, b in pairwise(stamps))
    assert [e.time_us for e in sim.events] == sorted(e.time_us for e in sim.events)


@pytest.mark.parametrize("process", PROCESSES)
def test_each_process_has_front_and_back_office_teams(process: str) -> None:
    """Every process hands work between front-office and back-office teams of named people."""
    sim = simulate(process, 150, seed=3)
    teams = {e.team for e in sim.events}
    assert any(t.startswith("front-office/") for t in teams if t)
    assert any(t.startswith("back-office/") for t in teams if t)
    assert all(e.resource and re.fullmatch(r"u-\d{3}", e.resource) for e in sim.events)
    assert {e.activity for e in sim.events} <= set(activities(process))
    assert len({tuple(p) for p in paths(sim.events).values()}) > 5  # branching, not one line


@pytest.mark.parametrize("process", PROCESSES)
def test_ids_and_attributes_follow_the_case_event_contract(process: str) -> None:
    """Case ids look like onb-000017, event ids are <case>-<n> in order, attributes are JSON."""
    prefix = {"onboarding": "onb", "payments": "pay", "claims": "clm"}[process]
    sim = simulate(process, 40, seed=5, with_start_events=True)
    assert {e.lifecycle for e in sim.events} == {"start", "complete"}
    for case_id, events in by_case(sim.events).items():
        assert re.fullmatch(rf"{prefix}-\d{{6}}", case_id)
        assert [e.event_id for e in events] == [f"{case_id}-{n}" for n in range(1, len(events) + 1)]
    for event in sim.events:
        assert event.attributes is not None and "amount" in json.loads(event.attributes)
        assert event.to_json()["process"] == process


def test_start_events_do_not_change_completions() -> None:
    """Start events add measurable service time and leave the complete events' times unchanged."""
    plain = simulate("claims", 80, seed=2)
    timed = simulate("claims", 80, seed=2, with_start_events=True)
    key = [(e.case_id, e.activity, e.time_us) for e in plain.events]
    assert [(e.case_id, e.activity, e.time_us) for e in timed.events
            if e.lifecycle == "complete"] == key
    for events in by_case(timed.events).values():
        for before, after in pairwise(events):
            if before.lifecycle == "start":
                assert after.lifecycle == "complete" and after.activity == before.activity


def test_bottleneck_raises_wait_before_activity_after_since() -> None:
    """Waits before the bottleneck activity grow several-fold once work queues after since."""
    since = datetime(2026, 1, 19, 9, 0, tzinfo=AMS)
    since_us = to_time_us(since)
    anomalies = Anomalies(bottleneck=Bottleneck("Risk review", since, factor=5.0))
    sim = simulate("onboarding", 600, seed=11, anomalies=anomalies)
    waits: dict[bool, list[int]] = {False: [], True: []}
    hit: set[str] = set()
    for case_id, events in by_case(sim.events).items():
        for prev, event in pairwise(events):
            if event.activity == "Risk review":
                waits[prev.time_us >= since_us].append(event.time_us - prev.time_us)
                if prev.time_us >= since_us:
                    hit.add(case_id)
    assert len(waits[False]) > 50 and len(waits[True]) > 50
    assert mean(waits[True]) > 3 * mean(waits[False])
    truth = sim.ground_truth["anomalies"]["bottleneck"]
    assert truth["activity"] == "Risk review" and truth["factor"] == 5.0
    assert set(truth["cases"]) == hit
    assert datetime.fromisoformat(truth["since"]) == since


def test_rework_cases_repeat_the_loop_and_others_stay_natural() -> None:
    """Reworked cases run the loop 1-3 times more than naturally; the rest are untouched."""
    loop = [REQUEST, RECEIVED]
    base = paths(simulate("onboarding", 400, seed=4).events)
    anomalies = Anomalies(rework=ReworkLoop(tuple(loop), 0.2))
    sim = simulate("onboarding", 400, seed=4, anomalies=anomalies)
    truth = sim.ground_truth["anomalies"]["rework"]
    got = paths(sim.events)
    affected = set(truth["cases"])
    assert len(affected) == 80 and truth["activities"] == loop
    for case_id, path in got.items():
        if case_id in affected:
            assert runs(path, loop) == truth["runs"][case_id] >= 2
            assert 1 <= runs(path, loop) - runs(base[case_id], loop) <= 4
        else:
            assert path == base[case_id]
            assert runs(path, loop) <= truth["natural_max_runs"]
            assert max(Counter(path).values()) <= sim.ground_truth["natural_max_visits"]


def test_stuck_cases_end_at_the_activity_and_never_finish() -> None:
    """Stuck cases stop right after the named activity and reach no end activity."""
    sim = simulate("claims", 300, seed=9, anomalies=Anomalies(stuck=StuckCases("Assessment", 0.1)))
    base = paths(simulate("claims", 300, seed=9).events)
    truth = sim.ground_truth["anomalies"]["stuck"]
    ends = set(sim.ground_truth["end_activities"])
    assert ends == {"Close claim"} and truth["after_activity"] == "Assessment"
    got = paths(sim.events)
    assert len(truth["cases"]) == 30
    for case_id in truth["cases"]:
        path = got[case_id]
        assert path[-1] == "Assessment" and not ends & set(path)
        assert base[case_id][:len(path)] == path and len(base[case_id]) > len(path)
    assert all(p[-1] in ends for c, p in got.items() if c not in truth["cases"])


def test_ground_truth_round_trips_through_json(tmp_path: Path) -> None:
    """write_ground_truth writes every simulation's ground truth as JSON that reads back equal."""
    since = datetime(2026, 1, 12, 9, 0, tzinfo=AMS)
    sims = [simulate("payments", 60, seed=1, anomalies=Anomalies(
                bottleneck=Bottleneck("Resolution", since),
                rework=ReworkLoop(("Customer enquiry", "Repair payment")),
                stuck=StuckCases("Triage"))),
            simulate("claims", 20, seed=2)]
    target = tmp_path / "truth" / "ground_truth.json"
    write_ground_truth(sims, target)
    assert json.loads(target.read_text(encoding="utf-8")) == {
        "simulations": [s.ground_truth for s in sims]}
    assert set(sims[0].ground_truth["anomalies"]) == {"bottleneck", "rework", "stuck"}


@pytest.mark.parametrize(("process", "anomalies", "bad"), [
    ("mortgages", Anomalies(), "mortgages"),
    ("onboarding", Anomalies(bottleneck=Bottleneck("Teleport", datetime(2026, 1, 5))), "Teleport"),
    ("onboarding", Anomalies(rework=ReworkLoop(("Verify identity", "Triage"))), "Triage"),
    ("claims", Anomalies(stuck=StuckCases("Open account")), "Open account"),
    ("claims", Anomalies(stuck=StuckCases("Close claim")), "Close claim"),
    ("payments", Anomalies(bottleneck=Bottleneck("Exception raised", datetime(2026, 1, 5))),
     "Exception raised"),
])
def test_bad_names_raise_a_simulation_error_naming_them(
        process: str, anomalies: Anomalies, bad: str) -> None:
    """An unknown process or an activity the process cannot use raises SimulationError (of the
    one hierarchy) naming it."""
    with pytest.raises(SimulationError, match=re.escape(repr(bad))) as caught:
        simulate(process, 5, anomalies=anomalies)
    valid = PROCESSES if process not in PROCESSES else activities(process)
    assert any(name in str(caught.value) for name in valid if name != bad)
    if process not in PROCESSES:
        with pytest.raises(SimulationError, match="mortgages"):
            activities(process)
