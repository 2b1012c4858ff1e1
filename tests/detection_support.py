"""What the alert-detection tests share: the simulator's calendar and evenings, a rule run on
the events up to a moment, and the events and context of a simulation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from conftest import event_frame

from alerts.calendar import WorkCalendar
from alerts.context import RuleContext
from alerts.registry import ProcessDefinition
from ingest.simulate import Simulation
from mining.frame import Events, prepare
from schemas.alerts import Finding

AMS = ZoneInfo("Europe/Amsterdam")


CAL = WorkCalendar()


START = date(2026, 1, 5)  # the simulator's default first day, a Monday


def evening(business_day: int) -> datetime:
    """18:00 on the n-th business day after START."""
    day = CAL.add_business_days(START, business_day)
    return datetime.combine(day, datetime.min.time(), tzinfo=AMS).replace(hour=18)


def sweep(seeds: Sequence[int]) -> list[Any]:
    """The values of a ``seeds`` parameter: the sweep's first seed in CI, the whole sweep in
    the benchmark tier (``pytest -m bench``)."""
    return [pytest.param(tuple(seeds[:1]), id="one-seed"),
            pytest.param(tuple(seeds), id="sweep", marks=pytest.mark.bench)]


def run(rule: Callable[[RuleContext], list[Finding]], df: pl.DataFrame, truth: dict[str, Any],
        now: datetime) -> list[Finding]:
    """The rule on the events up to ``now`` (what a store would hold then)."""
    process = ProcessDefinition(name=truth["process"],
                                end_activities=tuple(truth["end_activities"]))
    seen = prepare(df.filter(pl.col("timestamp") <= now.astimezone(UTC)))
    return rule(RuleContext(process, seen, now))


CALENDAR = WorkCalendar()  # the simulator's working hours: Mon-Fri 09:00-17:30 Amsterdam


ONSET = datetime(2026, 4, 27, 9, 0, tzinfo=AMS)  # working day 80 of a simulation from 5 January


def events_of(sim: Simulation) -> Events:
    """The simulated events as the store hands them to mining (arrival order = list order)."""
    return prepare(event_frame(sim.events))


def last_arrival(sim: Simulation) -> datetime:
    """When the last case arrived: the end of the simulated period. Later events only drain the
    work in progress (no new cases), which is no state a running process is ever in."""
    return max(e.timestamp for e in sim.events if e.event_id.endswith("-1"))


def context(process: str, events: Events, now: datetime) -> RuleContext:
    """A context with the default thresholds and calendar."""
    return RuleContext(ProcessDefinition(process), events, now)


def business_days_off(since: object) -> int:
    """How many business days a finding's "since" is from the injected onset."""
    assert since is not None
    return abs(CALENDAR.count_business_days(ONSET.date(), since))  # type: ignore[arg-type]
