"""Directly-follows graph with counts and waiting times, equal to pm4py's discover_dfg."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mining.frame import EventsLike, prepare
from mining.stats import WaitStats, wait_aggs, wait_stats

# Semantics (checked against pm4py 2.7 in tests/test_mining_oracle.py):
# - edges: pm4py sorts a pandas frame by (case, timestamp) with a stable multi-key sort on
#   the frame's order, then pairs each event with the next one of its case. We sort by
#   (case_id, timestamp, seq), so when pm4py is given the frame in `seq` order the edges,
#   counts and waits are identical.
# - waits: pm4py's performance DFG takes (next timestamp - timestamp) in seconds, then the
#   pandas groupby mean / median per edge; ours is the same on microsecond timestamps.
# - start/end activities: pm4py takes the first/last row of each case *in frame order*
#   without sorting; we take them in timestamp order. They agree on any frame whose events
#   are chronological within each case (what pm4py.format_dataframe produces) and we are the
#   consistent one when they are not.


@dataclass(frozen=True)
class Edge:
    """One directly-follows edge: how often `target` directly follows `source`, and the wait."""

    source: str
    target: str
    count: int
    wait: WaitStats


@dataclass(frozen=True)
class Dfg:
    """A directly-follows graph with its start and end activity counts."""

    edges: tuple[Edge, ...]
    start_activities: dict[str, int]
    end_activities: dict[str, int]

    def counts(self) -> dict[tuple[str, str], int]:
        """Edge counts keyed by (source, target), as pm4py.discover_dfg returns them."""
        return {(e.source, e.target): e.count for e in self.edges}


def _count_dict(df: pl.DataFrame, key: str) -> dict[str, int]:
    """Value counts of one column as a dict sorted by count desc, then name."""
    counts = df.group_by(key).len().sort(["len", key], descending=[True, False])
    return {str(k): int(n) for k, n in counts.iter_rows()}


def start_end_activities(data: EventsLike) -> tuple[dict[str, int], dict[str, int]]:
    """First and last activity counts over cases, in timestamp order."""
    df = prepare(data).df
    ends = df.group_by("case_id").agg(
        pl.col("activity").first().alias("start"), pl.col("activity").last().alias("end")
    )
    return _count_dict(ends, "start"), _count_dict(ends, "end")


def discover_dfg(data: EventsLike, lifecycle: str | None = None) -> Dfg:
    """Directly-follows graph of the events, ordered by (case_id, timestamp, seq)."""
    events = prepare(data, lifecycle)
    table = (
        events.steps.group_by("source", "target")
        .agg(pl.len().alias("count"), *wait_aggs())
        .sort(["count", "source", "target"], descending=[True, False, False])
    )
    edges = tuple(
        Edge(row["source"], row["target"], int(row["count"]), wait_stats(row))
        for row in table.iter_rows(named=True)
    )
    start, end = start_end_activities(events)
    return Dfg(edges=edges, start_activities=start, end_activities=end)
