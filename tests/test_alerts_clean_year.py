"""Clean simulated years (onboarding, payments, claims) give no rework, stuck or no-events
finding: zero false alarms is the bar for a healthy process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import polars as pl
import pytest
from conftest import sim_frame
from detection_support import evening, run, sweep

from alerts.calendar import WorkCalendar
from alerts.context import RuleContext
from alerts.registry import ProcessDefinition
from alerts.rules.no_events import no_events
from alerts.rules.rework import rework
from alerts.rules.stuck import normal_waits, stuck, transitions
from mining.frame import Events, prepare

PROCESSES = [("onboarding", 40), ("payments", 60), ("claims", 25)]
SEEDS = range(17, 22)
WEEKS = range(10, 251, 5)  # every fifth business day: from the second week to the last arrivals


@cache
def year(process: str, per_day: int, seed: int) -> tuple[Events, dict[str, Any]]:
    """A clean simulated year (about 250 working days of cases), prepared once."""
    df, truth = sim_frame(process, per_day * 250, seed=seed)
    return prepare(df), truth


@pytest.mark.parametrize("process,per_day", PROCESSES)
def test_clean_year_gives_no_finding(process: str, per_day: int) -> None:
    """A clean simulated year (about 250 working days of cases): no rework, stuck or no-events
    finding that opens an alert just after the last event, and no rework finding at any month's
    end before it."""
    events, truth = year(process, per_day, 17)
    df = events.df
    last: datetime = df["timestamp"].max()  # type: ignore[assignment]
    end = last + timedelta(minutes=1)
    found = [f.summary for rule in (rework, stuck, no_events) for f in run(rule, df, truth, end)
             if f.opens]  # a finding only holding an open alert never opens one
    monthly = [f.summary for day in range(65, 250, 21) for f in run(rework, df, truth, evening(day))]
    assert found == [] and monthly == []


@pytest.mark.parametrize("seeds", sweep(SEEDS))
@pytest.mark.parametrize("process,per_day", PROCESSES)
def test_clean_years_give_no_stuck_case_week_by_week(process: str, per_day: int,
                                                     seeds: tuple[int, ...]) -> None:
    """Clean simulated years (one; five with -m bench), each evaluated at 18:00 every fifth
    business day while cases arrive: the stuck rule opens no alert, although ordinary waits
    beyond 5 x their step's p90 and 3 business days (what a fixed multiple of the p90 would
    list) happen in each."""
    calendar, found, beyond = WorkCalendar(), [], 0
    for seed in seeds:
        events, truth = year(process, per_day, seed)
        definition = ProcessDefinition(name=truth["process"],
                                       end_activities=tuple(truth["end_activities"]))
        for day in WEEKS:
            now = evening(day)
            seen = Events(events.df.filter(pl.col("timestamp") <= now.astimezone(UTC)))
            found += [(seed, day, f.summary) for f in stuck(RuleContext(definition, seen, now))
                      if f.opens]  # one only holding an open alert never opens one
        waits = transitions(events.df, calendar)
        limits = normal_waits(waits).select(
            "step", pl.max_horizontal(5 * pl.col("p90_s"), 3 * calendar.day_seconds).alias("limit"))
        beyond += waits.join(limits, on="step").filter(pl.col("wait") > pl.col("limit")).height
    assert found == []
    assert beyond >= len(seeds)
