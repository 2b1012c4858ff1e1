"""Hand-offs between teams: consecutive events of a case done by different teams."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mining.frame import EventsLike, prepare
from mining.stats import WaitStats, wait_aggs, wait_stats


@dataclass(frozen=True)
class Handoff:
    """Work passing from one team to another: how often, in how many cases, and the wait."""

    from_team: str
    to_team: str
    count: int
    cases: int
    wait: WaitStats


def discover_handoffs(data: EventsLike, lifecycle: str | None = None) -> list[Handoff]:
    """Team changes between consecutive events (both teams known), by count desc, then names."""
    steps = prepare(data, lifecycle).steps
    table = (
        steps.filter(
            pl.col("team").is_not_null()
            & pl.col("next_team").is_not_null()
            & (pl.col("team") != pl.col("next_team"))
        )
        .group_by("team", "next_team")
        .agg(pl.len().alias("count"), pl.col("case_id").n_unique().alias("cases"), *wait_aggs())
        .sort(["count", "team", "next_team"], descending=[True, False, False])
    )
    return [
        Handoff(row["team"], row["next_team"], int(row["count"]), int(row["cases"]), wait_stats(row))
        for row in table.iter_rows(named=True)
    ]
