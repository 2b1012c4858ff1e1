"""`ReadModel`: one process's figures folded as its events arrive, windows as sums of days.

River-style: `update(events) -> self` folds new events, the figures are read from properties,
and whatever the arrival order (late, out of order, twice, a finished case getting one more
event) the folded model equals one built from the same distinct events in one go, and its
exact figures equal the batch mining's (`mining.summary.summarize`) on those events with
``seq`` the order of first arrival (tests/test_read_model.py checks both).

- **Open cases are kept one by one**: their events in case order (time, then arrival), and
  their facts counted in `open_figures`. They are the work in flight, what stuck-case and
  prediction rules read.
- **A case completes** when its last event (in case order) is one of ``end_activities``. Its
  facts are then added to the bucket of the UTC day of that last event, and its events let go.
- **A completed case that gets one more event is reopened**: its folded events come back from
  ``history`` (the store answers it by case, among the events already folded), its facts are
  taken out of their day, and it is counted again as the new events place it.
- **A window** ("the last 4 weeks") is the sum of whole days: `completed(since_us)` counts the
  cases completed on or after the day of ``since_us``; `figures()` is every completed case plus
  the open ones, what `mine` counts.

Exact: counts (events, cases, activities, start/end, edges, variants, hand-offs, rework) and
the sums and means of waits and durations. Within the sketches' alpha (default 1%): medians,
p90s and maxima (see `mining.sketch`). Without ``end_activities`` no case completes, and every
case stays open. Not thread-safe.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Final, Self

from mining.case_facts import CaseFacts, case_facts
from mining.figures import Figures
from mining.sketch import DEFAULT_ALPHA
from schemas.event import LIFECYCLES, CaseEvent

DAY_US: Final = 86_400 * 1_000_000

History = Callable[[Collection[str]], Mapping[str, Sequence[CaseEvent]]]
"""The already folded events of completed cases, each in case order; cases unknown are left out."""


def day_of(time_us: int) -> int:
    """The start of the UTC day holding a moment, in microseconds since the epoch."""
    return time_us - time_us % DAY_US


def no_history(case_ids: Collection[str]) -> Mapping[str, Sequence[CaseEvent]]:
    """History for a model that never reopens a completed case (every case is new)."""
    return {}


class _Open:
    """An open case: its events in case order under (time_us, arrival) keys, ids held."""

    __slots__ = ("events", "facts", "ids")

    def __init__(self) -> None:
        self.events: list[tuple[int, int, CaseEvent]] = []
        self.ids: set[str] = set()
        self.facts: CaseFacts | None = None

    def place(self, event: CaseEvent, arrival: int) -> bool:
        """Insert an event in case order; False when the case already holds its id."""
        if event.event_id in self.ids:
            return False
        self.ids.add(event.event_id)
        insort(self.events, (event.time_us, arrival, event))  # arrivals are unique: never compares events
        return True

    def ordered(self) -> list[CaseEvent]:
        """The events in case order."""
        return [row[2] for row in self.events]


class ReadModel:
    """One process's folded figures; see the module."""

    def __init__(self, process: str, *, end_activities: Collection[str] = (),
                 history: History = no_history, lifecycle: str | None = None,
                 alpha: float = DEFAULT_ALPHA) -> None:
        if lifecycle is not None and lifecycle not in LIFECYCLES:
            raise ValueError(f"unknown lifecycle {lifecycle!r}; allowed: {LIFECYCLES}")
        self.process, self.lifecycle, self.alpha = process, lifecycle, alpha
        self.closing = frozenset(end_activities)
        self._history = history
        self._open: dict[str, _Open] = {}
        self._open_figures = Figures(alpha)
        self._days: dict[int, Figures] = {}
        self._arrivals = 0
        self._duplicates = 0
        self._reopened = 0

    # -- updates --
    def update(self, events: Iterable[CaseEvent]) -> Self:
        """Fold new events of this process (others, and other lifecycles when one is set, are
        left out); a re-delivered event is counted once."""
        touched: dict[str, list[CaseEvent]] = {}
        for event in events:
            if event.process != self.process or (self.lifecycle and event.lifecycle != self.lifecycle):
                continue
            touched.setdefault(event.case_id, []).append(event)
        unseen = [case_id for case_id in touched if case_id not in self._open]
        folded = self._history(unseen) if unseen else {}
        for case_id, arrived in touched.items():
            case = self._open.get(case_id)
            if case is None:
                case = self._open[case_id] = self._reopen(folded.get(case_id, ()))
            elif case.facts is not None:
                self._open_figures.add(case.facts, -1)
            for event in arrived:
                self._arrivals += 1
                if not case.place(event, self._arrivals):
                    self._duplicates += 1
            case.facts = case_facts(case.ordered())
            if case.facts.end in self.closing:
                self._day(case.facts.last_us).add(case.facts)
                del self._open[case_id]
            else:
                self._open_figures.add(case.facts)
        return self

    def _reopen(self, history: Sequence[CaseEvent]) -> _Open:
        """An open case holding a completed case's folded events, its facts taken out of its day."""
        case = _Open()
        if not history:
            return case
        for arrival, event in enumerate(history, start=-len(history)):  # before every new arrival
            case.place(event, arrival)
        facts = case_facts(case.ordered())
        day = self._days[day_of(facts.last_us)]
        day.add(facts, -1)
        if not day.cases:
            del self._days[day_of(facts.last_us)]
        self._reopened += 1
        return case

    def _day(self, time_us: int) -> Figures:
        """The figures of the cases completed on the day of a moment."""
        key = day_of(time_us)
        day = self._days.get(key)
        if day is None:
            day = self._days[key] = Figures(self.alpha)
        return day

    # -- results --
    @property
    def open_cases(self) -> Mapping[str, CaseFacts]:
        """The facts of each open case, by case id (the work in flight)."""
        return {case_id: case.facts for case_id, case in self._open.items() if case.facts is not None}

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
