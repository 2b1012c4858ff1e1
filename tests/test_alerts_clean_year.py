"""Clean simulated years (onboarding, payments, claims) give no rework, stuck or no-events
finding: zero false alarms is the bar for a healthy process."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from conftest import sim_frame
from test_alerts_detection_rework import evening, run

from alerts.rules.no_events import no_events
from alerts.rules.rework import rework
from alerts.rules.stuck import stuck


@pytest.mark.parametrize("process,per_day", [("onboarding", 40), ("payments", 60), ("claims", 25)])
def test_clean_year_gives_no_finding(process: str, per_day: int) -> None:
    """A clean simulated year (about 250 working days of cases): no rework, stuck or no-events
    finding just after the last event, and no rework finding at any month's end before it."""
    df, truth = sim_frame(process, per_day * 250, seed=17)
    last: datetime = df["timestamp"].max()  # type: ignore[assignment]
    end = last + timedelta(minutes=1)
    found = [f.summary for rule in (rework, stuck, no_events) for f in run(rule, df, truth, end)]
    monthly = [f.summary for day in range(65, 250, 21) for f in run(rework, df, truth, evening(day))]
    assert found == [] and monthly == []
