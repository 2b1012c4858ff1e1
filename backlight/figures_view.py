"""A process's figures from its read model, typed: one view for the API and the CLI.

What `mine` computes from the whole history, this answers from the persisted read model
(backlight/read_models.py): the window's days, or for all time the two totals, never the
events. So it costs what changed since the last answer (the fold of the new events) plus the
window's days.

Counts are exact. Waits and durations in seconds: means exact, medians, p90s and maxima within
the relative error ``approximation`` states (a `mining.sketch.QuantileSketch`). A window is whole
UTC days of case completion, counted back from the last day a case completed (never later than
tomorrow): "4w" is the cases completed in the 28 days up to it, "all" every case, open ones too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from backlight.read_models import ReadModels
from mining.figures import Figures
from mining.read_model import DAY_US, day_of
from mining.rework import MAX_LOOPS
from mining.sketch import QuantileSketch
from schemas.errors import BacklightError
from schemas.event import from_time_us
from storage import ReadModelTables

Window = Literal["4w", "quarter", "all"]
WINDOW_DAYS: Final[dict[str, int | None]] = {"4w": 28, "quarter": 91, "all": None}


class UnknownWindow(BacklightError):
    """A window that is none of ``WINDOW_DAYS``'s."""

    def __init__(self, window: str) -> None:
        super().__init__(f"unknown window {window!r}; allowed: {', '.join(WINDOW_DAYS)}")
TOP_VARIANTS: Final = 50


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Seconds(_Out):
    """Seconds: the mean is exact; median, p90 and max within ``approximation.relative_error``."""

    mean: float
    median: float
    p90: float
    max: float

    @classmethod
    def of(cls, sketch: QuantileSketch) -> Seconds:
        return cls(mean=round(sketch.mean_s, 3), median=round(sketch.quantile_s(0.5), 3),
                   p90=round(sketch.quantile_s(0.9), 3), max=round(sketch.max_s, 3))


class Count(_Out):
    name: str
    count: int


class EdgeOut(_Out):
    source: str
    target: str
    count: int
    wait_seconds: Seconds


class VariantOut(_Out):
    activities: list[str]
    count: int


class HandoffOut(_Out):
    from_team: str
    to_team: str
    count: int
    cases: int
    wait_seconds: Seconds


class ReworkOut(_Out):
    activity: str
    cases: int
    self_loop_cases: int
    loop_cases: int
    repeat_cases: int
    redo_cases: int


class LoopOut(_Out):
    cycle: list[str]
    cases: int


class Approximation(_Out):
    relative_error: float
    applies_to: str = "median, p90 and max of every *_seconds figure; counts and means are exact"


class FiguresOut(_Out):
    """One process's figures in one window, from its read model."""

    process: str
    window: Literal["4w", "quarter", "all"]
    completed_from: datetime | None
    """The first UTC day of case completion counted (None: all, open cases included)."""
    events: int
    cases: int
    open_cases: int
    activities: list[Count]
    start_activities: list[Count]
    end_activities: list[Count]
    dfg: list[EdgeOut]
    variants: list[VariantOut]
    """The most frequent variants (at most 50), by count."""
    variant_count: int
    case_duration_seconds: Seconds
    rework: list[ReworkOut]
    loops: list[LoopOut]
    """The directly-follows cycles cases went round (at most 50), by cases: ``mine``'s loops."""
    handoffs: list[HandoffOut]
    approximation: Approximation
    unfolded_events: int
    """Stored events not in these figures yet (of any process): 0 unless the read models are
    far behind (a store never folded: run `backlight rebuild`)."""

    @classmethod
    def of(cls, process: str, window: Literal["4w", "quarter", "all"], start: datetime | None,
           figures: Figures, open_cases: int, unfolded: int) -> FiguresOut:
        edges = figures.edges
        handoffs, handoff_cases = figures.handoffs, figures.handoff_cases
        variants = figures.variants
        return cls(
            process=process, window=window, completed_from=start, events=figures.events,
            cases=figures.cases, open_cases=open_cases,
            activities=[Count(name=a, count=n) for a, n in figures.activities.items()],
            start_activities=[Count(name=a, count=n) for a, n in figures.start_activities.items()],
            end_activities=[Count(name=a, count=n) for a, n in figures.end_activities.items()],
            dfg=[EdgeOut(source=a, target=b, count=k.count, wait_seconds=Seconds.of(k))
                 for (a, b), k in sorted(edges.items(), key=lambda kv: (-kv[1].count, kv[0]))],
            variants=[VariantOut(activities=list(t), count=n)
                      for t, n in list(variants.items())[:TOP_VARIANTS]],
            variant_count=len(variants),
            case_duration_seconds=Seconds.of(figures.durations),
            rework=[ReworkOut(activity=a, cases=r.cases, self_loop_cases=r.self_loop_cases,
                              loop_cases=r.loop_cases, repeat_cases=r.repeat_cases,
                              redo_cases=r.redo_cases)
                    for a, r in sorted(figures.rework.items(), key=lambda kv: (-kv[1].cases, kv[0]))],
            loops=[LoopOut(cycle=list(lp.cycle), cases=lp.cases) for lp in figures.loops[:MAX_LOOPS]],
            handoffs=[HandoffOut(from_team=a, to_team=b, count=k.count, cases=handoff_cases[(a, b)],
                                 wait_seconds=Seconds.of(k))
                      for (a, b), k in sorted(handoffs.items(), key=lambda kv: (-kv[1].count, kv[0]))],
            approximation=Approximation(relative_error=figures.alpha), unfolded_events=unfolded,
        )



def window_days(tables: ReadModelTables, process: str, window: str,
                now: datetime | None = None) -> tuple[int, int] | None:
    """The first and last UTC day (their starts in µs) of ``window``: the days up to the last
    one a case of the process completed (never later than tomorrow: a case stored with a time
    in year 9999 does not move it), the last 28 or 91 of them, or all of them ("all"); None
    before any case completed."""
    last = tables.last_day(process)
    if last is None:
        return None
    moment = now or datetime.now(UTC)
    last = min(last, day_of(int(moment.timestamp() * 1e6) + DAY_US))
    days = WINDOW_DAYS[window]
    return (-(2**62) if days is None else last - (days - 1) * DAY_US), last


def figures_view(models: ReadModels, tables: ReadModelTables, process: str, window: Window,
                 fold_limit: int | None = None) -> FiguresOut:
    """The process's figures in the window, after folding what arrived (at most about
    ``fold_limit`` events, and none while another instance is seen folding; all when None)."""
    models.catch_up(limit=fold_limit, yielding=fold_limit is not None)
    behind = models.behind()
    open_cases = tables.open_count(process)
    start: datetime | None = None
    if WINDOW_DAYS[window] is None:
        figures = models.figures(process)
    else:
        span = window_days(tables, process, window)
        if span is None:
            figures = Figures()
        else:
            figures, start = models.figures(process, *span), from_time_us(span[0])
    return FiguresOut.of(process, window, start, figures, open_cases, behind)
