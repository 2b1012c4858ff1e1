"""A process's line on the overview, from its read model: what `/` and `/api/processes` show.

Read from the persisted read models (backlight/read_models.py), never from the events: the
window's days (at most 91), or for all time the two totals, and for the weekly trend the days of
its last weeks; of each document only the few figures a line needs are decoded. So the overview
costs what changed since the last view (its fold) and a handful of small reads per process,
whatever the years stored.

What each figure is:
- ``cases`` and ``events``: of the cases completed in the window (whole UTC days of completion
  counted back from the last day a case completed; ``backlight.figures_view``), or for all time
  of every case, open ones too (what `mine` counts);
- ``open_cases``: every case in flight, whatever the window (a case idle for five weeks has no
  event in the last four and is still work in flight);
- ``median_case_s`` and ``sla_met``: of the completed cases in the window, their durations in
  the process's working time; the median within 1% (`mining.sketch`), SLA met exact but for
  cases within 1% of the SLA;
- ``weekly``: the median working-time duration of the cases completed in each ISO week (UTC) of
  the window's last weeks (at most 26);
- ``rework_share``: the share of the cases in which some activity was completed more than once
  (`mining.rework`'s definition, the one the rework alerts use);
- ``as_of`` (the latest event) and ``out_of_range`` (events stored with a time before 1970 or
  more than a day ahead, as `mine` counts them) come from the store's indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from alerts.registry import ProcessDefinition
from backlight.figures_view import WINDOW_DAYS, UnknownWindow, window_days
from mining.read_model import DAY_US
from mining.rework import rework_share
from mining.sketch import QuantileSketch
from mining.timerange import latest_allowed
from mining.variants import WeekThroughput
from schemas.event import from_time_us
from storage import EventStore, ReadModelTables

TREND_WEEKS: Final[dict[str, int]] = {"4w": 4, "quarter": 13, "all": 26}
"""How many weeks the weekly trend shows per window."""


class _Brief(msgspec.Struct):
    """The figures of a stored day or total a line needs (the rest of the document is skipped)."""

    alpha: float
    events: int
    cases: int
    rework_cases: int
    business_durations: list[Any]

    def business(self) -> QuantileSketch:
        zeros, total, bins = self.business_durations
        return QuantileSketch.restore(self.alpha, zeros, {int(k): int(n) for k, n in bins}, total)


_DECODER = msgspec.json.Decoder(_Brief)


@dataclass(frozen=True)
class ProcessFigures:
    """One process's overview line in one window; see the module."""

    process: str
    window: str
    as_of: datetime | None
    events: int
    cases: int
    open_cases: int
    median_case_s: float | None
    weekly: tuple[WeekThroughput, ...]
    sla_met: float | None
    rework_share: float | None
    out_of_range: int


def process_figures(definition: ProcessDefinition, window: str, tables: ReadModelTables,
                    store: EventStore, now: datetime | None = None) -> ProcessFigures:
    """The process's line in ``window`` ("4w", "quarter" or "all"), as the read models hold it
    now (fold first: `ReadModels.catch_up`)."""
    if window not in WINDOW_DAYS:
        raise UnknownWindow(window)
    process = definition.name
    now = now or datetime.now(UTC)
    span = window_days(tables, process, window, now)
    if window == "all":  # the two totals: never the days
        totals = tables.totals(process)
        briefs = () if totals is None else (_DECODER.decode(totals[0]),
                                            _DECODER.decode(totals[1]))
        completed, counted = _sum(briefs[:1]), _sum(briefs)
    else:
        days = {} if span is None else tables.days(process, span[0], span[1])
        completed = counted = _sum(_DECODER.decode(doc) for doc in days.values())
    business = completed.business
    limit = None if definition.sla is None else definition.calendar.seconds(definition.sla)
    return ProcessFigures(
        process=process, window=window,
        as_of=store.latest(process, latest_allowed(now)),
        events=counted.events, cases=counted.cases, open_cases=tables.open_count(process),
        median_case_s=business.quantile_s(0.5) if business.count else None,
        weekly=_weekly(tables, process, span, TREND_WEEKS[window]),
        sla_met=(business.count_at_most_s(limit) / business.count
                 if limit is not None and business.count else None),
        rework_share=rework_share(counted.rework_cases, counted.cases),
        out_of_range=store.out_of_range(process, latest_allowed(now)))


@dataclass
class _Total:
    """Briefs added up: counts summed, working-time sketches merged."""

    events: int = 0
    cases: int = 0
    rework_cases: int = 0
    business: QuantileSketch = field(default_factory=QuantileSketch)


def _sum(briefs: Iterable[_Brief]) -> _Total:
    """The briefs added up."""
    total = _Total()
    for brief in briefs:
        total.events += brief.events
        total.cases += brief.cases
        total.rework_cases += brief.rework_cases
        total.business.merge(brief.business())
    return total


def _weekly(tables: ReadModelTables, process: str, span: tuple[int, int] | None,
            weeks: int) -> tuple[WeekThroughput, ...]:
    """Median working-time duration of the cases completed per ISO week, the last ``weeks``
    weeks up to the window's last day."""
    if span is None:
        return ()
    last = span[1]
    first = last - (weeks * 7 - 1) * DAY_US
    by_week: dict[str, QuantileSketch] = {}
    for day, doc in tables.days(process, first, last).items():
        brief = _DECODER.decode(doc)
        moment = from_time_us(day)
        if moment is None or not brief.cases:
            continue
        year, week, _ = moment.date().isocalendar()
        key = f"{year}-W{week:02d}"
        held = by_week.get(key)
        by_week[key] = brief.business() if held is None else held.merge(brief.business())
    return tuple(WeekThroughput(week, sketch.count, sketch.quantile_s(0.5))
                 for week, sketch in sorted(by_week.items()) if sketch.count)
