"""Tests for the series an alert's page charts (alerts.episode_series): per rule, on hand-made
logs with known daily medians and weekly shares, and on a simulated slowdown the rule finds."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conftest import event_frame

from alerts.calendar import WorkCalendar
from alerts.context import RuleContext
from alerts.episode_series import episode_series, span_of
from alerts.facts import Facts
from alerts.registry import ProcessDefinition
from alerts.rules.waits import bottleneck
from ingest.simulate import Anomalies, Bottleneck, simulate
from mining.frame import Events, prepare
from schemas.alerts import Alert, Finding, Severity, Status
from schemas.event import CaseEvent, to_time_us

AMS = ZoneInfo("Europe/Amsterdam")
CALENDAR = WorkCalendar()  # Mon-Fri 09:00-17:30 Amsterdam: a business day is 8.5 hours
DAY_H = 8.5


def at(day: int, hour: float) -> datetime:
    """A moment in March 2026, Amsterdam time (the 2nd and the 9th are Mondays)."""
    return datetime(2026, 3, day, 9, tzinfo=AMS) + timedelta(hours=hour - 9)


def events(rows: list[tuple[str, str, datetime, dict[str, str]]]) -> Events:
    out = [CaseEvent(f"e{i}", "p", case, activity, to_time_us(moment), "complete", None, None,
                     json.dumps(attrs)) for i, (case, activity, moment, attrs) in enumerate(rows)]
    return prepare(event_frame(out))


def alert(rule: str, subject: str, evidence: dict[str, Any], since: date | None,
          segment: dict[str, str] | None = None, last_seen: datetime | None = None) -> Alert:
    finding = Finding(rule, "p", subject, Severity.WARNING, "s", evidence, segment or {}, since)
    return Alert.from_finding(finding, Status.FIRING, None, last_seen or at(13, 17))


def wait_log() -> Events:
    """A -> B each business day of two weeks: in the first week the waits (two cases a day,
    east and west) are 1, 2, 3, 4, 5 business hours for east and half an hour longer for west;
    in the second week east waits 8 business hours, west 1 hour."""
    rows: list[tuple[str, str, datetime, dict[str, str]]] = []
    for i, day in enumerate(range(2, 7)):
        for region, hours in (("east", i + 1), ("west", i + 1.5)):
            rows += [(f"{region}{day}", "A", at(day, 9), {"region": region}),
                     (f"{region}{day}", "B", at(day, 9 + hours), {"region": region})]
    for day in range(9, 14):
        for region, hours in (("east", 8), ("west", 1)):
            rows += [(f"{region}{day}", "A", at(day, 9), {"region": region}),
                     (f"{region}{day}", "B", at(day, 9 + hours), {"region": region})]
    return events(rows)


WAIT_EVIDENCE = {"activity": "B", "since": "2026-03-09",
                 "baseline_window": {"from": "2026-03-02", "to": "2026-03-06"},
                 "window": {"from": "2026-03-09", "to": "2026-03-13"}}


def test_bottleneck_series_is_the_daily_median_wait_in_its_segment() -> None:
    """For region=east the points are east's waits alone, one per day it happened; the band is
    the 10th-90th percentile of the baseline week's points and its level their median."""
    facts = Facts.build(wait_log(), CALENDAR, at(20, 12), segment_keys=("region",))
    a = alert("bottleneck", "wait before B", WAIT_EVIDENCE, date(2026, 3, 9), {"region": "east"})
    series = episode_series(a, facts)
    assert series is not None
    by_day = dict(series.points)
    assert [round(by_day[date(2026, 3, d)] * DAY_H, 9) for d in range(2, 7)] == [1, 2, 3, 4, 5]
    assert all(abs(by_day[date(2026, 3, d)] * DAY_H - 8) < 1e-9 for d in range(9, 14))
    assert series.band is not None
    assert abs(series.band.level * DAY_H - 3) < 1e-9
    assert abs(series.band.low * DAY_H - 1.4) < 1e-9 and abs(series.band.high * DAY_H - 4.6) < 1e-9
    assert series.onset == date(2026, 3, 9)
    assert (series.start, series.end) == (date(2026, 3, 2), date(2026, 3, 13))
    assert "wait before B (region=east)" in series.title and series.unit == "business days"


def test_bottleneck_series_without_segment_takes_every_case() -> None:
    """Process-wide, a day's point is the median of both regions' waits."""
    facts = Facts.build(wait_log(), CALENDAR, at(20, 12))
    series = episode_series(alert("bottleneck", "wait before B", WAIT_EVIDENCE,
                                  date(2026, 3, 9)), facts)
    assert series is not None
    by_day = dict(series.points)
    assert abs(by_day[date(2026, 3, 3)] * DAY_H - (2 + 2.5) / 2) < 1e-9
    assert abs(by_day[date(2026, 3, 10)] * DAY_H - (8 + 1) / 2) < 1e-9


def test_handoff_series_follows_the_teams_of_the_subject() -> None:
    """A hand-off series counts only the waits from the subject's first team to its second."""
    rows: list[tuple[str, str, datetime, dict[str, str]]] = []
    for day in range(2, 14):
        if date(2026, 3, day).weekday() >= 5:
            continue
        hours = 2 if day < 9 else 6
        rows += [(f"c{day}", "A", at(day, 9), {}),
                 (f"c{day}", "B", at(day, 9 + hours), {}),
                 (f"c{day}", "C", at(day, 17), {})]
    out = [CaseEvent(f"e{i}", "p", case, act, to_time_us(m), "complete", None,
                     {"A": "front", "B": "back", "C": "back"}[act], "{}")
           for i, (case, act, m, _attrs) in enumerate(rows)]
    facts = Facts.build(prepare(event_frame(out)), CALENDAR, at(20, 12))
    series = episode_series(alert("handoff", "front -> back", WAIT_EVIDENCE, date(2026, 3, 9)),
                            facts)
    assert series is not None
    assert {round(v * DAY_H, 9) for d, v in series.points if d < date(2026, 3, 9)} == {2.0}
    assert {round(v * DAY_H, 9) for d, v in series.points if d >= date(2026, 3, 9)} == {6.0}


def rework_log() -> Events:
    """Four cases start each day of the weeks of 2 and 9 March; in the first week one case a day
    does X twice (and closes the loop Y -> X), in the second three a day."""
    rows: list[tuple[str, str, datetime, dict[str, str]]] = []
    for day in (*range(2, 7), *range(9, 14)):
        redo = 1 if day < 9 else 3
        for n in range(4):
            case = f"c{day}-{n}"
            rows += [(case, "X", at(day, 9 + n), {}), (case, "Y", at(day, 9.5 + n), {})]
            if n < redo:
                rows.append((case, "X", at(day, 10 + n), {}))
    return events(rows)


REWORK_EVIDENCE = {"activity": "X",
                   "baseline": {"from": "2026-03-02T00:00:00+01:00",
                                "to": "2026-03-09T00:00:00+01:00"},
                   "recent": {"from": "2026-03-09T00:00:00+01:00",
                              "to": "2026-03-13T18:00:00+01:00"}}


def test_rework_series_is_the_weekly_share_of_cases_redoing_the_activity() -> None:
    """One point per week (its Monday): 5 of 20 cases, then 15 of 20."""
    facts = Facts.build(rework_log(), CALENDAR, at(20, 12))
    series = episode_series(alert("rework", "rework at X", REWORK_EVIDENCE, date(2026, 3, 9)),
                            facts)
    assert series is not None
    assert series.points == ((date(2026, 3, 2), 5 / 20), (date(2026, 3, 9), 15 / 20))
    assert series.band is not None and series.band.level == 5 / 20
    assert series.unit == "share" and series.baseline_to == date(2026, 3, 8)


def test_loop_series_counts_cases_closing_the_cycle() -> None:
    """For ``loop X -> Y`` a case hits when Y is directly followed by X."""
    facts = Facts.build(rework_log(), CALENDAR, at(20, 12))
    evidence = {**REWORK_EVIDENCE, "cycle": ["X", "Y"]}
    del evidence["activity"]
    series = episode_series(alert("rework", "loop X -> Y", evidence, date(2026, 3, 9)), facts)
    assert series is not None
    assert [v for _d, v in series.points] == [5 / 20, 15 / 20]


def test_span_reaches_the_episode_end_and_other_rules_have_none() -> None:
    """A resolution after the evidence window extends the span; rules without a baseline, and
    evidence without windows, have no series."""
    late = alert("bottleneck", "wait before B", WAIT_EVIDENCE, None, last_seen=at(27, 12))
    span = span_of(late)
    assert span is not None and span.end == date(2026, 3, 27)
    facts = Facts.build(wait_log(), CALENDAR, at(20, 12))
    assert episode_series(alert("stuck", "stuck at B", WAIT_EVIDENCE, None), facts) is None
    assert episode_series(alert("bottleneck", "wait before B", {"activity": "B"}, None),
                          facts) is None


def test_a_simulated_slowdown_stands_above_its_band_after_the_onset() -> None:
    """The bottleneck finding on a five-fold Risk review slowdown (simulator): every point of
    its series from the onset's week on lies above the baseline level, and most above the
    band."""
    onset = datetime(2026, 4, 27, 9, tzinfo=AMS)  # working day 80 from 5 January
    sim = simulate("onboarding", 40 * 95, seed=7,  # 40 cases a working day
                   anomalies=Anomalies(bottleneck=Bottleneck("Risk review", onset, 5.0)))
    evs = prepare(event_frame(sim.events))
    now = max(e.timestamp for e in sim.events if e.event_id.endswith("-1"))
    ctx = RuleContext(ProcessDefinition("onboarding"), evs, now)
    found = [f for f in bottleneck(ctx) if f.subject == "wait before Risk review"]
    assert found, "the rule finds the slowdown"
    a = Alert.from_finding(found[0], Status.FIRING, None, now)
    series = episode_series(a, ctx.facts)
    assert series is not None and series.band is not None and series.onset is not None
    after = [v for d, v in series.points if d >= series.onset + timedelta(days=7)]
    assert after and min(after) > series.band.level
    assert sum(v > series.band.high for v in after) > len(after) / 2
