"""Service time (working on a step) versus waiting time (queued before it), per activity.

Needs ``start`` and ``complete`` lifecycle events. Pairing follows pm4py's ``to_interval``, so
that the service times equal ``pm4py.get_service_time`` on the same events: within a case,
in time order, each ``complete`` closes the earliest still-open ``start`` of the same activity;
a ``complete`` with no open ``start`` is an instant step (service 0); a ``start`` never
completed is left out. Waiting time is from the case's latest completion before the step's
start to that start (none for a case's first step).
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict, deque
from dataclasses import dataclass

import polars as pl

from mining.frame import EventsLike, prepare
from mining.stats import WaitStats, wait_aggs, wait_stats


@dataclass(frozen=True)
class ServiceTime:
    """One activity's instances, and how long they were worked on and waited for."""

    activity: str
    instances: int
    with_start: int
    service: WaitStats
    waiting: WaitStats


def _instances(df: pl.DataFrame) -> pl.DataFrame:
    """One row per completed activity instance: activity, service_s, wait_s (null if first).

    A plain loop: FIFO queues per activity are sequential by nature (a vectorised version with
    window functions measured slower on BPIC 2012: 0.37 s against 0.31 s). The instances are
    collected in typed arrays (activities as codes), not as a Python tuple each: on BPIC 2012
    that is about 6 MB instead of about 35 MB of Python objects at once.
    """
    codes: dict[str, int] = {}
    activities, service, waits, matches = array("l"), array("d"), array("d"), array("b")
    case: str | None = None
    open_starts: dict[str, deque[int]] = defaultdict(deque)
    last_end: int | None = None
    for case_id, activity, lifecycle, ts in df.select(
        "case_id", "activity", "lifecycle", pl.col("timestamp").dt.epoch("us")
    ).iter_rows():
        if case_id != case:
            case, last_end = case_id, None
            open_starts.clear()
        if lifecycle == "start":
            open_starts[activity].append(ts)
        elif lifecycle == "complete":
            queue = open_starts.get(activity)
            if queue:
                start, matched = queue.popleft(), True
            else:
                start, matched = ts, False
            activities.append(codes.setdefault(activity, len(codes)))
            service.append((ts - start) / 1e6)
            # NaN stands for "no earlier completion" (a wait is never NaN): null below
            waits.append(math.nan if last_end is None else max(0, start - last_end) / 1e6)
            matches.append(matched)
            last_end = ts if last_end is None else max(last_end, ts)
    names = pl.Series(list(codes), dtype=pl.String)
    return pl.DataFrame({
        "activity": names.gather(pl.Series(activities, dtype=pl.Int64)) if codes else names,
        "service_s": pl.Series(service, dtype=pl.Float64),
        "wait_s": pl.Series(waits, dtype=pl.Float64).fill_nan(None),
        "with_start": pl.Series(matches, dtype=pl.Int8).cast(pl.Boolean),
    })


def service_times(data: EventsLike) -> list[ServiceTime]:
    """Per activity, service and waiting time; empty when the events have no ``start``."""
    df = prepare(data).df
    if df.height == 0 or not (df["lifecycle"] == "start").any():
        return []
    inst = _instances(df)
    service = inst.group_by("activity").agg(
        pl.len().alias("instances"), pl.col("with_start").sum().alias("with_start"),
        *wait_aggs("service_s"))
    waiting = inst.group_by("activity").agg(*wait_aggs("wait_s"))
    out = []
    waits = {r["activity"]: r for r in waiting.iter_rows(named=True)}
    for row in service.sort(["instances", "activity"], descending=[True, False]).iter_rows(
            named=True):
        out.append(ServiceTime(row["activity"], int(row["instances"]), int(row["with_start"]),
                               wait_stats(row), wait_stats(waits[row["activity"]])))
    return out
