"""Mining: pure functions from a process's events to the facts about its flow.

Owns what is computed from events: the exact batch path that equals pm4py (the event frame,
the directly-follows graph, variants and durations, rework and loops, hand-offs, service
times, model discovery and conformance, the SVG map, XES export: what ``mine`` prints), and
the incremental models folded as events arrive (the live map ``LiveDfg``/``LiveMaps``, the read
models' figures and quantile sketches), each equal to the batch on the same events.

Below alerts and the shell: it imports only ``schemas`` and ``storage``, and must never import
ingest, alerts or the ``backlight`` shell.

The public surface is re-exported here. Each name loads its module on first use
(``schemas.lazy``), so that importing one part (``mining.summary`` for ``backlight mine``)
does not load the others (the live maps and through them the store, pm4py's wrapper, the SVG
renderer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.lazy import lazy_exports

if TYPE_CHECKING:
    from mining.dfg import Dfg, Edge, discover_dfg, start_end_activities
    from mining.errors import FrameError, MiningError, Pm4pyError
    from mining.export import write_xes
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
    from mining.live import LiveDfg
    from mining.live_maps import LiveMaps
    from mining.model import (
        DEFAULT_COVERAGE,
        ActivityCases,
        Conformance,
        DiscoveredModel,
        ModelFileError,
        check_conformance,
        discover_model,
        load_reference_model,
    )
    from mining.render import (
        MapOptions,
        ProcessMap,
        View,
        build_map,
        humanize_seconds,
        process_map_svg,
        render_svg,
        to_dot,
    )
    from mining.rework import Loop, Rework, discover_loops, discover_rework, rework_basis
    from mining.service import ServiceTime, service_times
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

_HOMES: dict[str, tuple[str, ...]] = {
    "mining.dfg": ("Dfg", "Edge", "discover_dfg", "start_end_activities"),
    "mining.errors": ("FrameError", "MiningError", "Pm4pyError"),
    "mining.export": ("write_xes",),
    "mining.frame": ("SCHEMA", "Events", "EventsLike", "check_frame", "empty_frame",
                     "frame_from_rows", "ordered", "prepare"),
    "mining.handoffs": ("Handoff", "discover_handoffs"),
    "mining.live": ("LiveDfg",),
    "mining.live_maps": ("LiveMaps",),
    "mining.model": ("DEFAULT_COVERAGE", "ActivityCases", "Conformance", "DiscoveredModel",
                     "ModelFileError", "check_conformance", "discover_model",
                     "load_reference_model"),
    "mining.render": ("MapOptions", "ProcessMap", "View", "build_map", "humanize_seconds",
                      "process_map_svg", "render_svg", "to_dot"),
    "mining.rework": ("Loop", "Rework", "discover_loops", "discover_rework", "rework_basis"),
    "mining.service": ("ServiceTime", "service_times"),
    "mining.stats": ("WaitStats",),
    "mining.summary": ("summarize",),
    "mining.variants": ("DurationStats", "Variant", "WeekThroughput", "case_durations",
                        "discover_variants", "duration_stats", "throughput_by_week"),
}

__all__ = [
    "DEFAULT_COVERAGE",
    "SCHEMA",
    "ActivityCases",
    "Conformance",
    "Dfg",
    "DiscoveredModel",
    "DurationStats",
    "Edge",
    "Events",
    "EventsLike",
    "FrameError",
    "Handoff",
    "LiveDfg",
    "LiveMaps",
    "Loop",
    "MapOptions",
    "MiningError",
    "ModelFileError",
    "Pm4pyError",
    "ProcessMap",
    "Rework",
    "ServiceTime",
    "Variant",
    "View",
    "WaitStats",
    "WeekThroughput",
    "build_map",
    "case_durations",
    "check_conformance",
    "check_frame",
    "discover_dfg",
    "discover_handoffs",
    "discover_loops",
    "discover_model",
    "discover_rework",
    "discover_variants",
    "duration_stats",
    "empty_frame",
    "frame_from_rows",
    "humanize_seconds",
    "load_reference_model",
    "ordered",
    "prepare",
    "process_map_svg",
    "render_svg",
    "rework_basis",
    "service_times",
    "start_end_activities",
    "summarize",
    "throughput_by_week",
    "to_dot",
    "write_xes",
]

lazy_exports(__name__, _HOMES)
