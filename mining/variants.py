"""Variants, case durations and throughput per week, equal to pm4py where pm4py has them."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mining.frame import EventsLike, prepare
from mining.stats import P90_INTERPOLATION

# pm4py.get_variants on a pandas frame reads each case's activities in frame order (its own
# sort call is discarded), and pm4py.get_all_case_durations takes last minus first timestamp
# in frame order. We use timestamp order (ties by seq), so both agree with pm4py on frames
# that are chronological within each case, e.g. after pm4py.format_dataframe.


@dataclass(frozen=True)
class Variant:
    """One variant: a case's activity sequence, how many cases follow it and their share."""

    activities: tuple[str, ...]
    count: int
    share: float


@dataclass(frozen=True)
class DurationStats:
    """Case duration in seconds (last minus first event): mean, median, p90."""

    mean: float
    median: float
    p90: float


@dataclass(frozen=True)
class WeekThroughput:
    """Cases that started in one ISO week and the median of their durations."""

    week: str
    cases: int
    median_seconds: float


def discover_variants(data: EventsLike, lifecycle: str | None = None) -> list[Variant]:
    """Variants sorted by count desc, then by activity sequence."""
    events = prepare(data, lifecycle)
    traces = events.df.group_by("case_id").agg(pl.col("activity").alias("trace"))
    # polars orders list columns lexicographically, as Python orders tuples
    counts = traces.group_by("trace").len().sort(["len", "trace"], descending=[True, False])
    total = events.cases
    # one str object per activity name, shared by every variant (not one per occurrence)
    names: dict[str, str] = {}
    return [
        Variant(tuple(names.setdefault(a, a) for a in trace), int(n), n / total)
        for trace, n in zip(counts["trace"].to_list(), counts["len"].to_list(), strict=True)
    ]


def case_durations(data: EventsLike, lifecycle: str | None = None) -> pl.DataFrame:
    """One row per case: case_id, start, end and duration_s (end - start in seconds)."""
    df = prepare(data, lifecycle).df
    return (
        df.group_by("case_id")
        .agg(pl.col("timestamp").first().alias("start"), pl.col("timestamp").last().alias("end"))
        .with_columns(((pl.col("end") - pl.col("start")).dt.total_microseconds() / 1e6).alias("duration_s"))
        .sort("case_id")
    )


def duration_stats(data: EventsLike, lifecycle: str | None = None) -> DurationStats:
    """Mean, median and p90 of case durations in seconds (zeros when there are no cases)."""
    durations = case_durations(data, lifecycle)
    if durations.is_empty():
        return DurationStats(0.0, 0.0, 0.0)
    d = pl.col("duration_s")
    row = durations.select(
        d.mean().alias("mean"),
        d.median().alias("median"),
        d.quantile(0.9, interpolation=P90_INTERPOLATION).alias("p90"),
    ).row(0, named=True)
    return DurationStats(float(row["mean"]), float(row["median"]), float(row["p90"]))


def throughput_by_week(data: EventsLike, lifecycle: str | None = None) -> list[WeekThroughput]:
    """Per ISO week of case start (UTC): cases started and their median duration, by week."""
    durations = case_durations(data, lifecycle)
    weeks = (
        durations.with_columns(
            pl.format(
                "{}-W{}",
                pl.col("start").dt.iso_year(),
                pl.col("start").dt.week().cast(pl.String).str.zfill(2),
            ).alias("week")
        )
        .group_by("week")
        .agg(pl.len().alias("cases"), pl.col("duration_s").median().alias("median_seconds"))
        .sort("week")
    )
    return [WeekThroughput(str(week), int(cases), float(median)) for week, cases, median in weeks.iter_rows()]
