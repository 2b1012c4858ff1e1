"""Backlight's mining core: pure functions from an event frame (polars) to process facts."""

from mining.dfg import Dfg, Edge, discover_dfg, start_end_activities
from mining.errors import FrameError, MiningError, Pm4pyError
from mining.frame import (
    SCHEMA,
    Events,
    EventsLike,
    check_frame,
    empty_frame,
    frame_from_rows,
    ordered,
    prepare,
)
from mining.handoffs import Handoff, discover_handoffs
from mining.rework import Loop, Rework, discover_loops, discover_rework, rework_basis
from mining.stats import WaitStats
from mining.summary import summarize
from mining.variants import (
    DurationStats,
    Variant,
    WeekThroughput,
    case_durations,
    discover_variants,
    duration_stats,
    throughput_by_week,
)

__all__ = [
    "SCHEMA",
    "Dfg",
    "DurationStats",
    "Edge",
    "Events",
    "EventsLike",
    "FrameError",
    "Handoff",
    "Loop",
    "MiningError",
    "Pm4pyError",
    "Rework",
    "Variant",
    "WaitStats",
    "WeekThroughput",
    "case_durations",
    "check_frame",
    "discover_dfg",
    "discover_handoffs",
    "discover_loops",
    "discover_rework",
    "discover_variants",
    "duration_stats",
    "empty_frame",
    "frame_from_rows",
    "ordered",
    "prepare",
    "rework_basis",
    "start_end_activities",
    "summarize",
    "throughput_by_week",
]
