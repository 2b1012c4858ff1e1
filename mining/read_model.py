"""`ReadModel`: one process's figures folded as its events arrive, windows as sums of days.

River-style: `update(events) -> self` folds new events, the figures are read from properties,
and whatever the arrival order (late, out of order, twice, a finished case getting one more
event) the folded model equals one built from the same distinct events in one go, and its
exact figures equal the batch mining's (`mining.summary.summarize`) on those events with
``seq`` the order of first arrival (tests/test_read_model.py checks both).

- **Open cases are kept one by one**, as their facts (`mining.case_facts`), counted in
  `open_figures`. They are the work in flight, what stuck-case and prediction rules read.
- **A case completes** when its last event (in case order) is one of ``end_activities``. Its
  facts are then added to the figures of the UTC day of that last event.
- **A case that gets new events** is taken out (from the open cases, or from its day: a
  completed case is reopened) and counted again from its folded events, which ``history``
  gives back (the store answers it by case, among the events folded before: seq up to the
  model's watermark), and the new ones. So the model holds no event, and a model restored
  from its stored days and open cases (`drain` tells what to store) goes on exactly.
- **A window** ("the last 4 weeks") is the sum of whole days: `completed(since_us)` counts the
  cases completed on or after the day of ``since_us``; `figures()` is every completed case plus
  the open ones, what `mine` counts.

Exact: counts (events, cases, activities, start/end, edges, variants, hand-offs, rework) and
the sums and means of waits and durations. Within the sketches' alpha (default 1%): medians,
p90s and maxima (see `mining.sketch`). Without ``end_activities`` no case completes, and every
case stays open. Not thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Self

from mining.case_facts import CaseFacts, case_facts
from mining.figures import Figures
from mining.sketch import DEFAULT_ALPHA
from schemas.event import LIFECYCLES, CaseEvent

DAY_US: Final = 86_400 * 1_000_000

History = Callable[[Collection[str]], Mapping[str, Sequence[CaseEvent]]]
"""The events folded before of the given cases, each case's in case order; new cases left out."""


def day_of(time_us: int) -> int:
    """The start of the UTC day holding a moment, in microseconds since the epoch."""
    return time_us - time_us % DAY_US


def no_history(case_ids: Collection[str]) -> Mapping[str, Sequence[CaseEvent]]:
    """History for a model built in one update from whole cases (every case is new to it)."""
    return {}


class MemoryHistory:
    """History kept in memory: `keep` each batch after folding it (tests, one-off tools)."""

    def __init__(self) -> None:
        self._cases: dict[str, list[tuple[int, int, CaseEvent]]] = {}
        self._ids: set[str] = set()

    def keep(self, events: Iterable[CaseEvent]) -> None:
        """Hold events just folded, each event id once, in arrival order after the others."""
        for event in events:
            if event.event_id not in self._ids:
                self._ids.add(event.event_id)
                self._cases.setdefault(event.case_id, []).append((event.time_us, len(self._ids), event))

    def __call__(self, case_ids: Collection[str]) -> Mapping[str, Sequence[CaseEvent]]:
        return {case: [row[2] for row in sorted(self._cases[case], key=lambda r: (r[0], r[1]))]
                for case in case_ids if case in self._cases}


def merged(history: Sequence[CaseEvent], arrived: Iterable[CaseEvent],
           arrivals: int) -> tuple[list[CaseEvent], int, int]:
    """A case's folded events and its new ones in case order (time, then arrival: the folded
    ones arrived first), each event id once; with the arrival counter after them and how many
    new events it already held."""
    keyed = [(event.time_us, rank, event) for rank, event in enumerate(history, start=-len(history))]
    ids = {event.event_id for event in history}
    repeats = 0
    for event in arrived:
        if event.event_id in ids:
            repeats += 1
            continue
        ids.add(event.event_id)
        arrivals += 1
        keyed.append((event.time_us, arrivals, event))
    keyed.sort(key=lambda row: (row[0], row[1]))
    return [row[2] for row in keyed], arrivals, repeats


@dataclass(frozen=True)
class Changes:
    """What an update changed: each day's figures and each case's open facts, None where gone."""

    days: Mapping[int, Figures | None]
    open_cases: Mapping[str, CaseFacts | None]


class ReadModel:
    """One process's folded figures; see the module."""

    def __init__(self, process: str, *, end_activities: Collection[str] = (),
                 history: History = no_history, lifecycle: str | None = None,
                 alpha: float = DEFAULT_ALPHA, days: Mapping[int, Figures] | None = None,
                 open_cases: Mapping[str, CaseFacts] | None = None) -> None:
        if lifecycle is not None and lifecycle not in LIFECYCLES:
            raise ValueError(f"unknown lifecycle {lifecycle!r}; allowed: {LIFECYCLES}")
        self.process, self.lifecycle, self.alpha = process, lifecycle, alpha
        self.closing = frozenset(end_activities)
        self._history = history
        self._days: dict[int, Figures] = {day: f.copy() for day, f in (days or {}).items()}
        self._open: dict[str, CaseFacts] = dict(open_cases or {})
        self._open_figures = Figures(alpha)
        for facts in self._open.values():
            self._open_figures.add(facts)
        self._arrivals = 0
        self._duplicates = 0
        self._reopened = 0
        self._changed_days: set[int] = set()
        self._changed_cases: set[str] = set()

    # -- updates --
    def update(self, events: Iterable[CaseEvent]) -> Self:
        """Fold new events of this process (others, and other lifecycles when one is set, are
        left out); a re-delivered event is counted once."""
        touched: dict[str, list[CaseEvent]] = {}
        for event in events:
            if event.process != self.process or (self.lifecycle and event.lifecycle != self.lifecycle):
                continue
            touched.setdefault(event.case_id, []).append(event)
        folded = self._history(list(touched)) if touched else {}
        for case_id, arrived in touched.items():
            before = folded.get(case_id, ())
            self._take_out(case_id, before)
            ordered, self._arrivals, repeats = merged(before, arrived, self._arrivals)
            self._duplicates += repeats
            facts = case_facts(ordered)
            if facts.end in self.closing:
                self._day(facts.last_us).add(facts)
                self._changed_days.add(day_of(facts.last_us))
            else:
                self._open[case_id] = facts
                self._open_figures.add(facts)
            self._changed_cases.add(case_id)
        return self

    def _take_out(self, case_id: str, history: Sequence[CaseEvent]) -> None:
        """Take a case's counted facts out: from the open cases, or from its day's figures."""
        facts = self._open.pop(case_id, None)
        if facts is not None:
            self._open_figures.add(facts, -1)
            return
        if not history:
            return
        facts = case_facts(history)
        key = day_of(facts.last_us)
        day = self._days[key]
        day.add(facts, -1)
        if not day.cases:
            del self._days[key]
        self._changed_days.add(key)
        self._reopened += 1

    def _day(self, time_us: int) -> Figures:
        """The figures of the cases completed on the day of a moment."""
        key = day_of(time_us)
        day = self._days.get(key)
        if day is None:
            day = self._days[key] = Figures(self.alpha)
        return day

    def drain(self) -> Changes:
        """What changed since the last drain (what a store writes), and start counting afresh."""
        changes = Changes(
            {day: (self._days[day].copy() if day in self._days else None)
             for day in sorted(self._changed_days)},
            {case: self._open.get(case) for case in sorted(self._changed_cases)})
        self._changed_days.clear()
        self._changed_cases.clear()
        return changes

    # -- results --
    @property
    def open_cases(self) -> Mapping[str, CaseFacts]:
        """The facts of each open case, by case id (the work in flight)."""
        return dict(self._open)

    @property
    def open_figures(self) -> Figures:
        """The open cases' figures."""
        return self._open_figures.copy()

    @property
    def days(self) -> Mapping[int, Figures]:
        """Completed cases' figures per UTC day of completion (day start in microseconds)."""
        return {day: figures.copy() for day, figures in sorted(self._days.items())}

    @property
    def duplicates(self) -> int:
        """Events ignored because their case already held them."""
        return self._duplicates

    @property
    def reopened(self) -> int:
        """Times a completed case got another event and was counted again."""
        return self._reopened

    def completed(self, since_us: int | None = None) -> Figures:
        """The cases completed on or after the UTC day of ``since_us`` (all when None)."""
        start = None if since_us is None else day_of(since_us)
        total = Figures(self.alpha)
        for day, figures in self._days.items():
            if start is None or day >= start:
                total.merge(figures)
        return total

    def figures(self) -> Figures:
        """Every case, completed or open: what the batch mining counts on the same events."""
        return self.completed().merge(self._open_figures)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReadModel):
            return NotImplemented
        return (self._days == other._days and self._open_figures == other._open_figures
                and self.open_cases == other.open_cases)

    __hash__ = None  # type: ignore[assignment]  # mutable
