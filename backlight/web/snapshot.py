"""What the web shows of one process in one time window, computed once and cached.

A ``Snapshot`` is built from the process's events and its definition (owner, SLA, calendar, end
activities) by pure code; ``backlight.web.cache`` keeps it until the store receives new events
of the process. Times are the data's own: "the last 4 weeks" ends at the process's latest event,
so a replayed or simulated history reads the same as a live one, and so do stuck cases (idle
until that moment). Events whose time is out of range (before 1970, or later than now plus
``mining.timerange.MAX_FUTURE_SKEW``: stored before decode refused them) are left out of every
figure and counted (``Snapshot.out_of_range``), so one event at 9999-12-30 cannot move "now".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import polars as pl

from alerts.context import RuleContext
from alerts.registry import ProcessDefinition
from alerts.rules.stuck import stuck
from mining.frame import Events, prepare
from mining.summary import summarize
from mining.timerange import within_range
from mining.variants import WeekThroughput, throughput_by_week
from schemas.event import from_time_us

WindowKey = Literal["4w", "quarter", "all"]
WINDOWS: Final[dict[str, tuple[str, timedelta | None]]] = {
    "4w": ("last 4 weeks", timedelta(weeks=4)),
    "quarter": ("last quarter", timedelta(days=91)),
    "all": ("all time", None),
}
DEFAULT_WINDOW: Final = "all"


@dataclass(frozen=True)
class StuckCase:
    """An open case idle far longer than normal at its step (the stuck rule's verdict)."""

    case_id: str
    step: str
    idle_days: float
    since: str


@dataclass(frozen=True)
class Snapshot:
    """One process in one window: the `mine` summary and the figures the pages add to it."""

    process: str
    window: str
    as_of: datetime | None
    """The latest event of the process (the data's "now"); None without events."""
    summary: dict[str, Any]
    """The `mine --format json` document of the window's events (what the API returns)."""
    open_cases: int
    median_case_s: float | None
    weekly: tuple[WeekThroughput, ...]
    sla_met: float | None
    """Share of the window's closed cases that took no longer than the SLA (business time)."""
    rework_share: float | None
    """Share of the window's cases in which some activity happened more than once."""
    stuck: tuple[StuckCase, ...]
    end_activities: tuple[str, ...]
    end_activities_learned: bool
    frame: pl.DataFrame
    """The window's events (maps and downloads are drawn from them)."""
    out_of_range: int = 0
    """The process's events left out of every figure for their time (``mining.timerange``)."""

    @property
    def events(self) -> int:
        return self.frame.height

    @property
    def cases(self) -> int:
        return int(self.summary["cases"])


def window_start(latest: datetime | None, window: str) -> datetime | None:
    """Where ``window`` begins, counted back from the latest event; None for all time."""
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; allowed: {', '.join(WINDOWS)}")
    span = WINDOWS[window][1]
    return None if span is None or latest is None else latest - span


def build_snapshot(definition: ProcessDefinition, frame: pl.DataFrame, window: str,
                   now: datetime | None = None) -> Snapshot:
    """The snapshot of ``frame`` (all of the process's events) restricted to ``window``; the
    events whose time is out of range when the clock reads ``now`` are only counted."""
    kept = within_range(frame, now)
    events_all, out_of_range = prepare(kept.frame), kept.out_of_range
    del frame, kept  # the ordered copy alone holds the events from here
    df = events_all.df
    latest = from_time_us(int(df["timestamp"].dt.epoch("us").max())) if df.height else None  # type: ignore[arg-type]
    start = window_start(latest, window)
    events = events_all if start is None else prepare(df.filter(pl.col("timestamp") >= start))
    summary = {**summarize(events, definition.name), "out_of_range_events": out_of_range}
    if latest is None:
        return Snapshot(definition.name, window, None, summary, 0, None, (), None, None, (),
                        definition.end_activities, False, events.df, out_of_range)
    ctx = RuleContext(definition, events, latest)
    # Figures about now (cases in flight, stuck cases) count every open case, whatever the
    # window: a case stuck for five weeks has no event in the last four. Figures about the
    # work done (map, variants, throughput, SLA, rework) are the window's.
    current = ctx if start is None else RuleContext(definition, events_all, latest)
    facts = ctx.facts
    closed = facts.cases.filter(pl.col("closed"))
    in_flight = current.facts.cases.filter(~pl.col("closed")).height
    return Snapshot(
        process=definition.name, window=window, as_of=latest, summary=summary,
        open_cases=in_flight,
        median_case_s=_median(closed["duration_s"]) if closed.height else None,
        weekly=tuple(throughput_by_week(events)),
        sla_met=_sla_met(definition, closed),
        rework_share=_rework_share(events),
        stuck=_stuck(current),
        end_activities=facts.end_activities, end_activities_learned=facts.end_activities_learned,
        frame=events.df, out_of_range=out_of_range)


def _median(column: pl.Series) -> float | None:
    value = column.median()
    return None if value is None else float(value)  # type: ignore[arg-type]


def _sla_met(definition: ProcessDefinition, closed: pl.DataFrame) -> float | None:
    if definition.sla is None or closed.is_empty():
        return None
    limit = definition.calendar.seconds(definition.sla)
    return float((closed["duration_s"] <= limit).mean())  # type: ignore[arg-type]


def _rework_share(events: Events) -> float | None:
    df = events.df
    if df.is_empty():
        return None
    per_case = (df.filter(pl.col("lifecycle") != "start")
                .group_by("case_id").agg((pl.col("activity").len() > pl.col("activity").n_unique())
                                         .alias("rework")))
    return float(per_case["rework"].mean()) if per_case.height else None  # type: ignore[arg-type]


def _stuck(ctx: RuleContext) -> tuple[StuckCase, ...]:
    out = []
    for finding in stuck(ctx):
        for case in finding.evidence.get("cases", []):
            out.append(StuckCase(str(case["case_id"]), str(case["step"]),
                                 float(case["idle_days"]), str(case["since"])))
    return tuple(sorted(out, key=lambda c: (-c.idle_days, c.case_id)))
