"""`Figures`: a process's figures as a sum of case facts, kept exactly under add and take out.

One `Figures` holds what a set of cases contributes (a time bucket's completed cases, or the
open cases): counts as integers and waits and durations as `QuantileSketch`es, so a case can be
taken out again (`add(facts, sign=-1)`) and figures of several buckets summed (`merge`).
Counts, sums and means are exact; quantiles and maxima are within the sketches' alpha.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from mining.case_facts import CaseFacts, Pair
from mining.counts import bump, ranked
from mining.rework import Loop
from mining.sketch import DEFAULT_ALPHA, QuantileSketch

REWORK_FLAGS = ("self_loop", "loop", "repeat", "redo")


@dataclass(frozen=True, slots=True)
class ReworkCounts:
    """Cases in which an activity was done again, and in which way (cases per flag)."""

    cases: int
    self_loop_cases: int
    loop_cases: int
    repeat_cases: int
    redo_cases: int


class Figures:
    """Sum of case facts; see the module. `add`/`merge` return self, results are properties."""

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        self.alpha = alpha
        self._events = 0
        self._cases = 0
        self._activities: dict[str, int] = {}
        self._starts: dict[str, int] = {}
        self._ends: dict[str, int] = {}
        self._variants: dict[tuple[str, ...], int] = {}
        self._edges: dict[Pair, QuantileSketch] = {}
        self._handoffs: dict[Pair, QuantileSketch] = {}
        self._handoff_cases: dict[Pair, int] = {}
        self._rework: dict[tuple[str, int], int] = {}  # (activity, flag index or -1 for any) -> cases
        self._rework_cases = 0
        self._loops: dict[tuple[str, ...], int] = {}  # cycle -> cases that went round it
        self._durations = QuantileSketch(alpha)
        self._business = QuantileSketch(alpha)

    # -- updates --
    def add(self, facts: CaseFacts, sign: int = 1) -> Self:
        """Count one case's facts (sign 1) or take them out again (sign -1)."""
        self._events += sign * len(facts.trace)
        self._cases += sign
        for activity in facts.trace:
            bump(self._activities, activity, sign)
        bump(self._starts, facts.start, sign)
        bump(self._ends, facts.end, sign)
        bump(self._variants, facts.trace, sign)
        self._durations.add(facts.duration_us, sign)
        if facts.business_us is not None:
            self._business.add(facts.business_us, sign)
        if facts.rework:
            self._rework_cases += sign
        for cycle in facts.loops:
            bump(self._loops, cycle, sign)
        self._waits(self._edges, facts.steps, sign)
        self._waits(self._handoffs, facts.handoffs, sign)
        for pair in {(a, b) for a, b, _ in facts.handoffs}:
            bump(self._handoff_cases, pair, sign)
        for item in facts.rework:
            bump(self._rework, (item.activity, -1), sign)
            for index, flag in enumerate((item.self_loop, item.loop, item.repeat, item.redo)):
                if flag:
                    bump(self._rework, (item.activity, index), sign)
        return self

    def merge(self, other: Figures, sign: int = 1) -> Self:
        """Add (sign 1) or subtract (sign -1) the figures of other cases."""
        self._events += sign * other._events
        self._cases += sign * other._cases
        for mine, theirs in ((self._activities, other._activities), (self._starts, other._starts),
                             (self._ends, other._ends)):
            for key, n in theirs.items():
                bump(mine, key, sign * n)
        for pair, n in other._handoff_cases.items():
            bump(self._handoff_cases, pair, sign * n)
        for key_v, n in other._variants.items():
            bump(self._variants, key_v, sign * n)
        for key_r, n in other._rework.items():
            bump(self._rework, key_r, sign * n)
        for sketches, extra in ((self._edges, other._edges), (self._handoffs, other._handoffs)):
            for pair, sketch in extra.items():
                held = sketches.setdefault(pair, QuantileSketch(self.alpha)).merge(sketch, sign)
                if not held.count:
                    del sketches[pair]
        self._durations.merge(other._durations, sign)
        self._business.merge(other._business, sign)
        self._rework_cases += sign * other._rework_cases
        for cycle, n in other._loops.items():
            bump(self._loops, cycle, sign * n)
        return self

    def copy(self) -> Figures:
        """Independent figures with the same counts."""
        return Figures(self.alpha).merge(self)

    # -- as stored (plain JSON types, the same figures back) --
    def to_doc(self) -> dict[str, Any]:
        """The figures as JSON-ready lists and numbers (how the store keeps a day)."""
        return {
            "alpha": self.alpha, "events": self._events, "cases": self._cases,
            "activities": sorted([a, n] for a, n in self._activities.items()),
            "starts": sorted([a, n] for a, n in self._starts.items()),
            "ends": sorted([a, n] for a, n in self._ends.items()),
            # traces as indexes into "names" (every activity of a variant is counted in
            # "activities"): an open process's variants are long and many, ints keep them small
            "variants": self._variant_doc(),
            "edges": sorted([a, b, _sketch_doc(k)] for (a, b), k in self._edges.items()),
            "handoffs": sorted([a, b, _sketch_doc(k)] for (a, b), k in self._handoffs.items()),
            "handoff_cases": sorted([a, b, n] for (a, b), n in self._handoff_cases.items()),
            "rework": sorted([a, i, n] for (a, i), n in self._rework.items()),
            "durations": _sketch_doc(self._durations),
            "business_durations": _sketch_doc(self._business),
            "rework_cases": self._rework_cases,
            "loops": sorted([list(c), n] for c, n in self._loops.items()),
        }

    def _variant_doc(self) -> list[list[Any]]:
        """Each variant as [activity indexes into the sorted activity names, count]."""
        index = {name: i for i, name in enumerate(sorted(self._activities))}
        return sorted([[index[a] for a in trace], n] for trace, n in self._variants.items())

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Figures:
        """Figures from what `to_doc` returned."""
        alpha = float(doc["alpha"])
        out = cls(alpha)
        out._events, out._cases = int(doc["events"]), int(doc["cases"])
        out._activities = {str(a): int(n) for a, n in doc["activities"]}
        out._starts = {str(a): int(n) for a, n in doc["starts"]}
        out._ends = {str(a): int(n) for a, n in doc["ends"]}
        names = [a for a, _ in doc["activities"]]
        out._variants = {tuple(names[i] for i in t): int(n) for t, n in doc["variants"]}
        out._edges = {(a, b): _sketch(alpha, k) for a, b, k in doc["edges"]}
        out._handoffs = {(a, b): _sketch(alpha, k) for a, b, k in doc["handoffs"]}
        out._handoff_cases = {(a, b): int(n) for a, b, n in doc["handoff_cases"]}
        out._rework = {(a, int(i)): int(n) for a, i, n in doc["rework"]}
        out._durations = _sketch(alpha, doc["durations"])
        out._business = _sketch(alpha, doc["business_durations"])
        out._rework_cases = int(doc["rework_cases"])
        out._loops = {tuple(c): int(n) for c, n in doc["loops"]}
        return out

    def _waits(self, into: dict[Pair, QuantileSketch], waits: Iterable[tuple[str, str, int]],
               sign: int) -> None:
        """Count (source, target, wait_us) triples into per-pair sketches."""
        for source, target, wait in waits:
            sketch = into.get((source, target))
            if sketch is None:
                sketch = into[(source, target)] = QuantileSketch(self.alpha)
            sketch.add(wait, sign)
            if not sketch.count:
                del into[(source, target)]

    # -- results (copies: keep them across updates) --
    @property
    def events(self) -> int:
        """Events of these cases."""
        return self._events

    @property
    def cases(self) -> int:
        """How many cases."""
        return self._cases

    @property
    def activities(self) -> dict[str, int]:
        """Events per activity, by count desc, then name."""
        return ranked(self._activities)

    @property
    def start_activities(self) -> dict[str, int]:
        """Cases per first activity, by count desc, then name."""
        return ranked(self._starts)

    @property
    def end_activities(self) -> dict[str, int]:
        """Cases per last activity, by count desc, then name."""
        return ranked(self._ends)

    @property
    def variants(self) -> dict[tuple[str, ...], int]:
        """Cases per trace, by count desc, then trace."""
        return ranked(self._variants)

    @property
    def edges(self) -> dict[Pair, QuantileSketch]:
        """Waits per directly-follows pair (the sketch's count is the edge's count)."""
        return {pair: sketch.copy() for pair, sketch in self._edges.items()}

    @property
    def edge_counts(self) -> dict[Pair, int]:
        """How often target directly follows source."""
        return {pair: sketch.count for pair, sketch in self._edges.items()}

    @property
    def handoffs(self) -> dict[Pair, QuantileSketch]:
        """Waits per (from team, to team) hand-off; the count is the hand-offs'."""
        return {pair: sketch.copy() for pair, sketch in self._handoffs.items()}

    @property
    def handoff_cases(self) -> dict[Pair, int]:
        """Cases with at least one hand-off per (from team, to team)."""
        return dict(self._handoff_cases)

    @property
    def rework(self) -> dict[str, ReworkCounts]:
        """Per activity done again in some case: the cases, in all and per way."""
        out: dict[str, ReworkCounts] = {}
        for (activity, index), n in self._rework.items():
            if index == -1:
                out[activity] = ReworkCounts(n, *(self._rework.get((activity, i), 0) for i in range(4)))
        return out

    @property
    def durations(self) -> QuantileSketch:
        """Case durations (first to last event) in microseconds."""
        return self._durations.copy()

    @property
    def business_durations(self) -> QuantileSketch:
        """Case durations in working time (the process's calendar), of the cases folded with
        one; in microseconds."""
        return self._business.copy()

    @property
    def loops(self) -> list[Loop]:
        """The directly-follows cycles cases went round, by cases desc, then length, then
        name (``mining.rework.discover_loops``' order)."""
        loops = [Loop(cycle, n) for cycle, n in self._loops.items()]
        loops.sort(key=lambda lp: (-lp.cases, len(lp.cycle), lp.cycle))
        return loops

    @property
    def rework_cases(self) -> int:
        """Cases in which some activity was completed more than once."""
        return self._rework_cases

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Figures):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in (
            "alpha", "_events", "_cases", "_activities", "_starts", "_ends", "_variants",
            "_edges", "_handoffs", "_handoff_cases", "_rework", "_rework_cases", "_loops",
            "_durations", "_business"))

    __hash__ = None  # type: ignore[assignment]  # mutable


def _sketch_doc(sketch: QuantileSketch) -> list[Any]:
    """A sketch as [zeros, total_us, [[bucket, count], ...]]."""
    return [sketch.zeros, sketch.total_us, sorted([k, n] for k, n in sketch.bins.items())]


def _sketch(alpha: float, doc: Sequence[Any]) -> QuantileSketch:
    """The sketch `_sketch_doc` described."""
    zeros, total, bins = doc
    return QuantileSketch.restore(alpha, zeros, {int(k): int(n) for k, n in bins}, total)
