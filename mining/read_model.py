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
  from what it stored (`drain` tells what) goes on exactly. Over a store (``stored``) it
  starts from the two totals alone and asks for a day or an open case only when an update
  touches it: a model costs what changes, not what was ever folded.
- **A window** ("the last 4 weeks") is the sum of whole days: `completed(since_us)` counts the
  cases completed on or after the day of ``since_us``; `figures()` is every completed case plus
  the open ones, what `mine` counts.

With ``business`` (the process's calendar) each case's duration is also kept in working time,
what SLAs and throughput are stated in.

Exact: counts (events, cases, activities, start/end, edges, variants, hand-offs, rework) and
the sums and means of waits and durations. Within the sketches' alpha (default 1%): medians,
p90s and maxima (see `mining.sketch`). Without ``end_activities`` no case completes, and every
case stays open. Not thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol, Self

from mining.case_facts import CaseFacts, case_facts
from mining.errors import FrameError
from mining.figures import Figures
from mining.sketch import DEFAULT_ALPHA
from schemas.event import LIFECYCLES, CaseEvent

DAY_US: Final = 86_400 * 1_000_000

History = Callable[[Collection[str]], Mapping[str, Sequence[CaseEvent]]]
"""The events folded before of the given cases, each case's in case order; new cases left out."""
Business = Callable[[Sequence[int], Sequence[int]], Sequence[float]]
"""Working microseconds between each pair of (first, last) moments in microseconds, in the
process's calendar (one call for a whole batch: a calendar is vectorised)."""


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


class Stored(Protocol):
    """Where a model's days and open cases are kept when they are not all in memory (the
    store's tables): asked only for the ones an update touches, or a window reads."""

    def days(self, keys: Collection[int]) -> Mapping[int, Figures]:
        """The figures of these days that exist."""
        ...

    def days_from(self, start: int) -> Mapping[int, Figures]:
        """The figures of every day from ``start`` (a day's first microsecond) on."""
        ...

    def open_cases(self, case_ids: Collection[str]) -> Mapping[str, CaseFacts]:
        """The facts of those of these cases that are open."""
        ...


@dataclass(frozen=True)
class Changes:
    """What an update changed: each day's figures and each case's open facts (None where
    gone), and the totals of the completed and of the open cases after it."""

    days: Mapping[int, Figures | None]
    open_cases: Mapping[str, CaseFacts | None]
    completed: Figures
    open: Figures


class ReadModel:
    """One process's folded figures; see the module."""

    def __init__(self, process: str, *, end_activities: Collection[str] = (),
                 history: History = no_history, lifecycle: str | None = None,
                 alpha: float = DEFAULT_ALPHA, days: Mapping[int, Figures] | None = None,
                 open_cases: Mapping[str, CaseFacts] | None = None, stored: Stored | None = None,
                 totals: tuple[Figures, Figures] | None = None,
                 business: Business | None = None) -> None:
        """``days`` and ``open_cases``: what it starts with; with ``stored`` they are only
        what it has at hand, and the rest is asked for, and ``totals`` (completed, open) must
        then be the stored ones (else they are summed from ``days`` and ``open_cases``).
        ``business``: the process's working time, for durations in business time."""
        if lifecycle is not None and lifecycle not in LIFECYCLES:
            raise FrameError(f"unknown lifecycle {lifecycle!r}; allowed: {LIFECYCLES}")
        if stored is not None and totals is None:
            raise ValueError("a model over stored days and open cases needs their stored totals")
        self.process, self.lifecycle, self.alpha = process, lifecycle, alpha
        self.closing = frozenset(end_activities)
        self._history = history
        self._business = business
        self._stored = stored
        self._days: dict[int, Figures] = {day: f.copy() for day, f in (days or {}).items()}
        self._open: dict[str, CaseFacts] = dict(open_cases or {})
        if totals is not None:
            self._completed, self._open_total = totals[0].copy(), totals[1].copy()
        else:
            self._completed, self._open_total = Figures(alpha), Figures(alpha)
            for figures in self._days.values():
                self._completed.merge(figures)
            for facts in self._open.values():
                self._open_total.add(facts)
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
        if not touched:
            return self
        folded = self._history(list(touched))
        self._fetch_open([case for case in touched if case not in self._open])
        # a completed case's day: that of its last folded event (history is in case order)
        self._fetch_days({day_of(folded[c][-1].time_us) for c in touched
                          if folded.get(c) and c not in self._open})
        news: list[CaseFacts] = []
        for case_id, arrived in touched.items():
            ordered, self._arrivals, repeats = merged(folded.get(case_id, ()), arrived,
                                                      self._arrivals)
            self._duplicates += repeats
            news.append(case_facts(ordered))
        closed = [c for c in touched if c not in self._open and folded.get(c)]
        counted = self._timed([case_facts(folded[c]) for c in closed] + news)
        for case_id, facts in zip(closed, counted[:len(closed)], strict=True):
            self._take_out_completed(case_id, facts)
        for case_id, facts in zip(touched, counted[len(closed):], strict=True):
            self._take_out_open(case_id)
            if facts.end in self.closing:
                self._fetch_days({day_of(facts.last_us)})
                self._day(facts.last_us).add(facts)
                self._completed.add(facts)
                self._changed_days.add(day_of(facts.last_us))
            else:
                self._open[case_id] = facts
                self._open_total.add(facts)
            self._changed_cases.add(case_id)
        return self

    def _timed(self, facts: list[CaseFacts]) -> list[CaseFacts]:
        """The facts with their working time, in one call of the calendar for all of them."""
        if self._business is None or not facts:
            return facts
        working = self._business([f.first_us for f in facts], [f.last_us for f in facts])
        return [replace(f, business_us=int(w)) for f, w in zip(facts, working, strict=True)]

    def _fetch_open(self, case_ids: list[str]) -> None:
        """Have at hand the stored facts of those of these cases that are open."""
        if self._stored is not None and case_ids:
            self._open.update(self._stored.open_cases(case_ids))

    def _fetch_days(self, keys: set[int]) -> None:
        """Have at hand the stored figures of these days."""
        wanted = [key for key in keys if key not in self._days]
        if self._stored is not None and wanted:
            self._days.update((day, f.copy()) for day, f in self._stored.days(wanted).items())

    def _take_out_open(self, case_id: str) -> None:
        """Take an open case's counted facts out of the open cases (if it is one)."""
        facts = self._open.pop(case_id, None)
        if facts is not None:
            self._open_total.add(facts, -1)

    def _take_out_completed(self, case_id: str, facts: CaseFacts) -> None:
        """Take a completed case's facts (as counted: from its folded events) out of its day."""
        key = day_of(facts.last_us)
        day = self._days[key]
        day.add(facts, -1)  # an emptied day stays at hand (empty), so it is not asked for again
        self._completed.add(facts, -1)
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
            {day: (self._days[day].copy() if self._days[day].cases else None)
             for day in sorted(self._changed_days)},
            {case: self._open.get(case) for case in sorted(self._changed_cases)},
            self._completed.copy(), self._open_total.copy())
        self._changed_days.clear()
        self._changed_cases.clear()
        return changes

    # -- results --
    @property
    def open_cases(self) -> Mapping[str, CaseFacts]:
        """The facts of each open case at hand, by case id (all of them without ``stored``)."""
        return dict(self._open)

    @property
    def open_figures(self) -> Figures:
        """The open cases' figures."""
        return self._open_total.copy()

    @property
    def days(self) -> Mapping[int, Figures]:
        """Completed cases' figures per UTC day of completion (day start in microseconds), of
        the days at hand (all of them without ``stored``)."""
        return {day: figures.copy() for day, figures in sorted(self._days.items()) if figures.cases}

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
        if since_us is None:
            return self._completed.copy()
        start = day_of(since_us)
        days = self._days if self._stored is None else self._stored.days_from(start)
        total = Figures(self.alpha)
        for day, figures in days.items():
            if day >= start:
                total.merge(figures)
        return total

    def figures(self) -> Figures:
        """Every case, completed or open: what the batch mining counts on the same events."""
        return self.completed().merge(self._open_total)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReadModel):
            return NotImplemented
        return (self.days == other.days and self._open == other._open
                and self._completed == other._completed and self._open_total == other._open_total)

    __hash__ = None  # type: ignore[assignment]  # mutable
