"""The figure an alert watches, as a series around its episode: what the alert's page charts.

Each rule with a baseline says what it compares; the series plots the same figure over the
baseline window, the episode and what followed, from the same derived tables the rule reads
(``alerts.facts``):

- ``bottleneck``: the daily median wait before the activity (``evidence["activity"]``), in
  business days, dated by the day the activity happened; the alert's segment filters the waits.
- ``handoff``: the daily median wait of the hand-offs from one team to the other (the subject
  ``"a -> b"``), the same way.
- ``throughput``: the daily median business duration of the cases that finished that day.
- ``rework``: the weekly share of the cases started that week (Monday, local) that redo the
  activity (``rework at A``, ``repeated request: A``: A happens twice or more) or close the loop
  (``loop a -> b``: b is directly followed by a).

The span runs from the first day of the baseline window in the evidence to the later of the
evidence window's end and the episode's last moment (resolved, or last seen). The baseline band
is the 10th-90th percentile of the plotted values within the baseline window, its level their
median, so the band and the line are in the same unit as the points. ``onset`` is the alert's
``since``. Other rules (governance, stuck, no events, conformance) have no series: None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from alerts.facts import Facts, segment_column
from schemas.alerts import Alert

WAIT_RULES = ("bottleneck", "handoff", "throughput")
REWORK_RULE = "rework"


@dataclass(frozen=True)
class Band:
    """The baseline as plotted: its level and the 10th-90th percentile of its points."""

    level: float
    low: float
    high: float


@dataclass(frozen=True)
class EpisodeSeries:
    """One figure over time, oldest first, with what to mark on it."""

    title: str
    """What is plotted (may hold event text: escaped where it is shown)."""
    unit: str
    """``"business days"`` or ``"share"``."""
    points: tuple[tuple[date, float], ...]
    start: date
    end: date
    baseline_from: date
    baseline_to: date
    """The baseline window, both days included."""
    band: Band | None
    """None when the baseline window has no point."""
    onset: date | None


@dataclass(frozen=True)
class Span:
    """The days a series covers and its baseline window."""

    start: date
    end: date
    baseline_from: date
    baseline_to: date


def has_series(alert: Alert) -> bool:
    """Whether the alert's rule has a series to chart."""
    return alert.rule in (*WAIT_RULES, REWORK_RULE)


def span_of(alert: Alert) -> Span | None:
    """The span and baseline window the alert's evidence names; None without one."""
    ev = alert.evidence
    if alert.rule in WAIT_RULES:
        base, window = _window(ev.get("baseline_window")), _window(ev.get("window"))
    elif alert.rule == REWORK_RULE:
        b, r = _window(ev.get("baseline")), _window(ev.get("recent"))
        base = None if b is None else (b[0], b[1] - timedelta(days=1))  # ends where recent starts
        window = r
    else:
        return None
    if base is None or window is None:
        return None
    last = (alert.resolved_at or alert.last_seen).date()
    return Span(base[0], max(window[1], last), base[0], base[1])


def _window(value: Any) -> tuple[date, date] | None:
    if not isinstance(value, Mapping):
        return None
    try:
        return _day(value["from"]), _day(value["to"])
    except (KeyError, TypeError, ValueError):
        return None


def _day(text: Any) -> date:
    if not isinstance(text, str):
        raise TypeError(text)
    return datetime.fromisoformat(text).date() if "T" in text else date.fromisoformat(text)


def episode_series(alert: Alert, facts: Facts) -> EpisodeSeries | None:
    """The alert's figure around its episode from ``facts`` (built with the alert's segment
    keys); None for a rule without one or evidence that names no windows."""
    span = span_of(alert)
    if span is None:
        return None
    made = (_rework if alert.rule == REWORK_RULE else _waits)(alert, facts, span)
    if made is None:
        return None
    title, unit, points = made
    onset = alert.since or _onset(alert.evidence.get("since"))
    inside = [v for d, v in points if span.baseline_from <= d <= span.baseline_to]
    band = None
    if inside:
        values = np.asarray(inside, dtype=np.float64)
        band = Band(float(np.median(values)), float(np.percentile(values, 10)),
                    float(np.percentile(values, 90)))
    return EpisodeSeries(title, unit, points, span.start, span.end, span.baseline_from,
                         span.baseline_to, band, onset)


def _onset(value: Any) -> date | None:
    try:
        return _day(value)
    except (TypeError, ValueError):
        return None


def _segment(rows: pl.DataFrame, segment: Mapping[str, str]) -> pl.DataFrame | None:
    for key, value in segment.items():
        column = segment_column(key)
        if column not in rows.columns:
            return None
        rows = rows.filter(pl.col(column) == value)
    return rows


def _waits(alert: Alert, facts: Facts, span: Span
           ) -> tuple[str, str, tuple[tuple[date, float], ...]] | None:
    where = "".join(f" ({k}={v})" for k, v in alert.segment.items())
    if alert.rule == "throughput":
        rows = facts.cases.filter(pl.col("closed"))
        value, day = "duration_s", "last_day"
        title = f"Daily median case duration{where}"
    elif alert.rule == "bottleneck":
        activity = alert.evidence.get("activity")
        if not isinstance(activity, str):
            return None
        rows = facts.waits.filter(pl.col("target") == activity)
        value, day = "wait_s", "ended_day"
        title = f"Daily median wait before {activity}{where}"
    else:
        source, arrow, target = alert.subject.partition(" -> ")
        if not arrow:
            return None
        rows = facts.waits.filter((pl.col("source_team") == source)
                                  & (pl.col("target_team") == target))
        value, day = "wait_s", "ended_day"
        title = f"Daily median wait of hand-offs {alert.subject}{where}"
    chosen = _segment(rows, alert.segment)
    if chosen is None:
        return None
    scale = facts.calendar.day_seconds
    daily = (chosen.filter(pl.col(day).is_between(span.start, span.end))
             .group_by(day).agg((pl.col(value).median() / scale).alias("v")).sort(day))
    points = tuple((d, float(v)) for d, v in daily.iter_rows())
    return f"{title}, business days", "business days", points


def _rework(alert: Alert, facts: Facts, span: Span
            ) -> tuple[str, str, tuple[tuple[date, float], ...]] | None:
    basis = facts.basis.select("case_id", "activity", "timestamp")
    cycle = alert.evidence.get("cycle")
    activity = alert.evidence.get("activity")
    if isinstance(cycle, list) and len(cycle) >= 2:
        first, last = str(cycle[0]), str(cycle[-1])
        following = pl.col("activity").shift(-1).over("case_id")
        hits = basis.filter((pl.col("activity") == last) & (following == first))
        title = f"Weekly share of cases closing the loop {' -> '.join(map(str, cycle))}"
    elif isinstance(activity, str):
        hits = (basis.filter(pl.col("activity") == activity)
                .group_by("case_id").agg(pl.len().alias("n")).filter(pl.col("n") >= 2))
        title = f"Weekly share of cases doing {activity} twice or more"
    else:
        return None
    hit_ids = hits.select("case_id").unique()
    local = pl.col("start").dt.convert_time_zone(facts.calendar.timezone).dt.date()
    cases = (basis.group_by("case_id").agg(pl.col("timestamp").min().alias("start"))
             .with_columns(local.alias("day"))
             .filter(pl.col("day").is_between(span.start, span.end))
             .with_columns((pl.col("day") - pl.duration(days=pl.col("day").dt.weekday() - 1))
                           .alias("week"))
             .join(hit_ids.with_columns(pl.lit(True).alias("hit")), on="case_id", how="left"))
    weekly = (cases.group_by("week")
              .agg((pl.col("hit").fill_null(False).sum() / pl.len()).alias("share"))
              .sort("week"))
    points = tuple((d, float(v)) for d, v in weekly.iter_rows())
    return title, "share", points
