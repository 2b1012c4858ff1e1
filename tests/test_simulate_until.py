"""The simulator ends an injected anomaly at a given time (it was fixed): from then on the
process runs as it would have without it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ingest.errors import SimulationError
from ingest.simulate import Anomalies, Bottleneck, ReworkLoop, StuckCases, simulate
from schemas.event import CaseEvent, to_time_us

AMS = ZoneInfo("Europe/Amsterdam")
START = datetime(2026, 1, 5, 9, 0, tzinfo=AMS)
SINCE = datetime(2026, 2, 2, 9, 0, tzinfo=AMS)
UNTIL = datetime(2026, 3, 2, 9, 0, tzinfo=AMS)


def by_case(events: list[CaseEvent]) -> dict[str, list[CaseEvent]]:
    """Each case's events in time order."""
    cases: dict[str, list[CaseEvent]] = {}
    for event in sorted(events, key=lambda e: e.time_us):
        cases.setdefault(event.case_id, []).append(event)
    return cases


def test_a_bottleneck_that_ends_slows_only_the_waits_before_its_end() -> None:
    """Every slowed case left the step before Assessment between since and until; a case that
    reaches Assessment after until is exactly as in a run without the bottleneck."""
    plain = by_case(simulate("claims", 1500, seed=3, start=START).events)
    fixed = simulate("claims", 1500, seed=3, start=START, anomalies=Anomalies(
        bottleneck=Bottleneck("Assessment", SINCE, factor=6.0, until=UNTIL)))
    truth = fixed.ground_truth["anomalies"]["bottleneck"]
    assert truth["until"] == "2026-03-02T08:00:00.000000+00:00" and truth["cases"]
    cases = by_case(fixed.events)
    for case_id in truth["cases"]:
        events = cases[case_id]
        waits_from = [events[i - 1].time_us for i, e in enumerate(events) if e.activity == "Assessment"]
        assert any(to_time_us(SINCE) <= t < to_time_us(UNTIL) for t in waits_from)
    later = [c for c, evs in plain.items() if evs[0].time_us >= to_time_us(UNTIL)]
    assert later and all(cases[c] == plain[c] for c in later)
    assert set(truth["cases"]) & set(later) == set()


def test_a_rework_loop_that_ends_touches_only_cases_arriving_before_its_end() -> None:
    """Loop cases all arrived between since and until; cases arriving later are unchanged."""
    plain = by_case(simulate("claims", 1500, seed=4, start=START).events)
    fixed = simulate("claims", 1500, seed=4, start=START, anomalies=Anomalies(
        rework=ReworkLoop(("Assessment", "Expert inspection"), share=0.3, since=SINCE,
                          until=UNTIL)))
    truth = fixed.ground_truth["anomalies"]["rework"]
    cases = by_case(fixed.events)
    assert truth["cases"] and truth["until"] == "2026-03-02T08:00:00.000000+00:00"
    for case_id in truth["cases"]:
        assert to_time_us(SINCE) <= cases[case_id][0].time_us < to_time_us(UNTIL)
    later = [c for c, evs in plain.items() if evs[0].time_us >= to_time_us(UNTIL)]
    assert later and all(cases[c] == plain[c] for c in later)


def test_stuck_cases_that_end_go_on_at_the_end_and_later_cases_never_stick() -> None:
    """Cases stuck after Assessment record their next step only after until, then finish as
    usual; no case arriving from until on is stuck."""
    fixed = simulate("claims", 1500, seed=5, start=START, anomalies=Anomalies(
        stuck=StuckCases("Assessment", share=0.05, until=UNTIL)))
    truth = fixed.ground_truth["anomalies"]["stuck"]
    cases = by_case(fixed.events)
    assert truth["cases"] and truth["until"] == "2026-03-02T08:00:00.000000+00:00"
    for case_id in truth["cases"]:
        events = cases[case_id]
        assert events[0].time_us < to_time_us(UNTIL)
        at = [e.activity for e in events].index("Assessment")
        assert len(events) > at + 1 and events[at + 1].time_us > to_time_us(UNTIL)
        assert events[-1].activity == "Close claim"


def test_an_end_before_the_start_is_refused() -> None:
    """until must come after since."""
    with pytest.raises(SimulationError, match=r"bottleneck until .* must be after its since"):
        simulate("claims", 10, anomalies=Anomalies(
            bottleneck=Bottleneck("Assessment", UNTIL, until=SINCE)))
