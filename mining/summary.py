"""`summarize`: the `mine --format json` document of one process."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from mining.dfg import discover_dfg
from mining.frame import EventsLike, prepare
from mining.handoffs import discover_handoffs
from mining.rework import discover_loops, discover_rework
from mining.service import service_times
from mining.stats import rounded
from mining.variants import discover_variants, duration_stats, throughput_by_week

NDIGITS = 3


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, or None."""
    return None if value is None else value.isoformat()


def _activities(df: pl.DataFrame) -> list[dict[str, Any]]:
    """Event counts per activity, by count desc, then name."""
    table = df.group_by("activity").len().sort(["len", "activity"], descending=[True, False])
    return [{"name": name, "count": int(n)} for name, n in table.iter_rows()]


def summarize(df: EventsLike, process: str, lifecycle: str | None = None) -> dict[str, Any]:
    """The JSON-serialisable summary of one process's events, as in DESIGN.md."""
    events = prepare(df, lifecycle)
    frame = events.df
    window = frame.select(pl.col("timestamp").min().alias("from"), pl.col("timestamp").max().alias("to"))
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
