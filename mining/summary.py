"""`summarize`: the `mine --format json` document of one process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from mining.dfg import discover_dfg
from mining.frame import Events, EventsLike, check_frame, only, ordered
from mining.handoffs import discover_handoffs
from mining.rework import discover_loops, discover_rework
from mining.service import service_times
from mining.stats import rounded
from mining.variants import discover_variants, duration_stats, throughput_by_week
from schemas.event import from_time_us

NDIGITS = 3


def _iso(micros: int | None) -> str | None:
    """ISO 8601 in UTC of microseconds since the epoch; None when there is none, or when Python
    cannot hold it (beyond year 9999: never raises)."""
    value = None if micros is None else from_time_us(micros)
    return None if value is None else value.isoformat()


def _activities(df: pl.DataFrame) -> list[dict[str, Any]]:
    """Event counts per activity, by count desc, then name."""
    table = df.group_by("activity").len().sort(["len", "activity"], descending=[True, False])
    return [{"name": name, "count": int(n)} for name, n in table.iter_rows()]


# The columns the summary reads as categoricals (4 bytes a row instead of a string view):
# every part groups, compares or sorts them by value, which categoricals keep (polars sorts
# them lexically). Few distinct values each: polars' categories are process-wide, so case
# ids (unbounded in a long-running server) stay strings.
_CODED = ("activity", "lifecycle", "resource", "team")


@dataclass(frozen=True, eq=False)
class Narrowed:
    """Checked events with only the columns the summary reads, in the frame's order."""

    df: pl.DataFrame


def narrow(data: pl.DataFrame) -> Narrowed:
    """The checked events without the columns no part of the summary reads (``event_id``,
    ``attributes``), repeated strings as categoricals. A caller that read the frame only for
    the summary lets the frame go once it has this: the sort then copies only these columns."""
    return Narrowed(check_frame(data).drop("event_id", "attributes").with_columns(
        pl.col(_CODED).cast(pl.Categorical)))


def summary_events(data: EventsLike | Narrowed, lifecycle: str | None = None) -> Events:
    """The events as the summary works on them: narrowed (see `narrow`), in case order,
    without ``seq`` and with cases numbered: the sort and every derived frame (steps, traces)
    copy the columns they keep."""
    if isinstance(data, Events):
        return only(data, lifecycle)
    frame = ordered((data if isinstance(data, Narrowed) else narrow(data)).df, lifecycle).drop("seq")
    # Cases as their number in case_id order (no part of the summary shows a case id, all
    # group or compare them): 4 bytes a row, and integer keys for every group_by.
    new_case = pl.col("case_id") != pl.col("case_id").shift(1)
    number = new_case.fill_null(True).cum_sum().cast(pl.UInt32)
    return Events(frame.with_columns(number.alias("case_id")), lifecycle)


def summarize(df: EventsLike | Narrowed, process: str, lifecycle: str | None = None) -> dict[str, Any]:
    """The JSON-serialisable summary of one process's events, as in DESIGN.md."""
    events = summary_events(df, lifecycle)
    frame = events.df
    moment = pl.col("timestamp").dt.epoch("us")
    window = frame.select(moment.min().alias("from"), moment.max().alias("to"))
    dfg = discover_dfg(events)
    stats = duration_stats(events)
    return {
        "process": process,
        "events": frame.height,
        "cases": events.cases,
        "window": {"from": _iso(window["from"][0]), "to": _iso(window["to"][0])},
        "activities": _activities(frame),
        "start_activities": dfg.start_activities,
        "end_activities": dfg.end_activities,
        "dfg": [
            {
                "source": e.source,
                "target": e.target,
                "count": e.count,
                "wait_seconds": e.wait.as_dict(NDIGITS),
            }
            for e in dfg.edges
        ],
        "variants": [
            {"activities": list(v.activities), "count": v.count, "share": rounded(v.share)}
            for v in discover_variants(events)
        ],
        "case_duration_seconds": {
            "mean": rounded(stats.mean),
            "median": rounded(stats.median),
            "p90": rounded(stats.p90),
        },
        "rework": [
            {
                "activity": r.activity,
                "cases": r.cases,
                "share": rounded(r.share),
                "self_loop_cases": r.self_loop_cases,
                "loop_cases": r.loop_cases,
                "repeat_cases": r.repeat_cases,
                "redo_cases": r.redo_cases,
            }
            for r in discover_rework(events)
        ],
        "loops": [{"cycle": list(lp.cycle), "cases": lp.cases} for lp in discover_loops(events)],
        "handoffs": [
            {
                "from_team": h.from_team,
                "to_team": h.to_team,
                "count": h.count,
                "cases": h.cases,
                "wait_seconds": h.wait.as_dict(NDIGITS),
            }
            for h in discover_handoffs(events)
        ],
        "throughput_by_week": [
            {"week": w.week, "cases": w.cases, "median_seconds": rounded(w.median_seconds)}
            for w in throughput_by_week(events)
        ],
        "service_times": [
            {
                "activity": s.activity,
                "instances": s.instances,
                "with_start": s.with_start,
                "service_seconds": s.service.as_dict(NDIGITS),
                "waiting_seconds": s.waiting.as_dict(NDIGITS),
            }
            for s in service_times(events)
        ],
    }
