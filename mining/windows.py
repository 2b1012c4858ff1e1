"""Which cases a read-model window counts, picked from an event frame (for what is drawn from
the events themselves: the map, the downloads, conformance).

A read model counts a completed case in the UTC day of its last event (``mining.read_model``);
a window is whole days. `completed_between` keeps the events of the cases whose last event falls
in ``[first, until)`` and is one of the end activities, so a map or a download of a window holds
exactly the cases its figures count.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import polars as pl


def completed_between(frame: pl.DataFrame, first: datetime, until: datetime,
                      end_activities: Collection[str]) -> pl.DataFrame:
    """The events (in their order) of the cases of ``frame`` (a ``FRAME_SCHEMA`` frame in time
    order, ties in arrival order) whose last event is in ``[first, until)`` and is an end
    activity."""
    if frame.is_empty() or not end_activities:
        return frame.clear()
    last = (frame.group_by("case_id", maintain_order=True)
            .agg(pl.col("timestamp").last().alias("_at"), pl.col("activity").last().alias("_end")))
    kept = last.filter((pl.col("_at") >= first) & (pl.col("_at") < until)
                       & pl.col("_end").is_in(list(end_activities)))["case_id"]
    return frame.filter(pl.col("case_id").is_in(kept.implode()))
