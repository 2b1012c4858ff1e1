"""The no-events rule: a process whose events stopped arriving, in business time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerts.context import RuleContext
from alerts.registry import ProcessDefinition
from alerts.rules.conformance import conformance
from alerts.rules.no_events import no_events
from alerts.rules.rework import rework
from alerts.rules.stuck import stuck
from alerts.thresholds import RuleSettings
from mining.frame import empty_frame, frame_from_rows, prepare
from schemas.alerts import Finding, Severity

AMS = ZoneInfo("Europe/Amsterdam")
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=AMS)


def busy_week() -> list[dict[str, Any]]:
    """An event every 10 minutes of working time, Monday to Friday (last at Friday 17:20)."""
    rows = []
    for day in range(5):
        opens = MONDAY + timedelta(days=day)
        for k in range(51):
            rows.append({"case_id": f"c{day}-{k // 5}", "activity": "Step",
                         "timestamp": opens + timedelta(minutes=10 * k)})
    return rows


def evaluate(rows: list[dict[str, Any]], now: datetime, **overrides: Any) -> list[Finding]:
    """The rule's findings for a process named "onboarding"."""
    process = ProcessDefinition(name="onboarding",
                                rules=RuleSettings().merged({"no_events": overrides}))
    return no_events(RuleContext(process, prepare(frame_from_rows(rows)), now))


def test_quiet_for_three_business_days_fires_critical() -> None:
    """Nothing since Friday 17:20 and now Thursday noon (3.4 business days, more than 2 and more
    than 10 x the usual 10-minute gap): one critical "no events" finding saying since when."""
    [finding] = evaluate(busy_week(), datetime(2026, 3, 12, 12, 0, tzinfo=AMS))
    assert finding.subject == "no events" and finding.severity is Severity.CRITICAL
    assert finding.summary == ("no onboarding events since 2026-03-06 17:20 (usually a gap of "
                               "at most 10 minutes)")
    assert finding.since == datetime(2026, 3, 6).date()
    assert finding.evidence["quiet_business_days"] == 3.37


def test_a_weekend_is_not_an_outage() -> None:
    """From Friday 17:20 to Monday 16:00 is under one business day: no finding, although more
    than two days of wall-clock time passed."""
    assert evaluate(busy_week(), datetime(2026, 3, 9, 16, 0, tzinfo=AMS)) == []


def test_sparse_process_is_judged_against_its_own_gaps() -> None:
    """One event per business day: the usual gap is a day, so 4 quiet business days are under
    10 x that and say nothing; 12 business days do."""
    rows = [{"case_id": f"c{i}", "activity": "Step",
             "timestamp": MONDAY + timedelta(days=d)}
            for i, d in enumerate(d for d in range(28) if (MONDAY + timedelta(days=d)).weekday() < 5)]
    last = MONDAY + timedelta(days=25)  # the fourth Friday, the last event
    assert rows[-1]["timestamp"] == last
    assert evaluate(rows, last + timedelta(days=6)) == []
    [finding] = evaluate(rows, last + timedelta(days=17))
    assert "usually a gap of at most 1.0 business days" in finding.summary


def test_settings_and_too_little_history() -> None:
    """quiet_for and severity come from the settings; fewer than 10 events judge nothing."""
    thursday = datetime(2026, 3, 12, 12, 0, tzinfo=AMS)
    assert evaluate(busy_week(), thursday, quiet_for="4 business days") == []
    [finding] = evaluate(busy_week(), thursday, severity="warning")
    assert finding.severity is Severity.WARNING
    assert evaluate(busy_week()[:9], thursday) == []


def test_a_process_without_events_gets_no_finding_from_these_rules() -> None:
    """No events at all (a process only named in the config): no-events, stuck, rework and
    conformance (without a readable model to blame) say nothing and do not fail."""
    process = ProcessDefinition(name="onboarding")
    ctx = RuleContext(process, prepare(empty_frame()), datetime(2026, 3, 12, 12, 0, tzinfo=AMS))
    assert [rule(ctx) for rule in (no_events, stuck, rework, conformance)] == [[], [], [], []]
