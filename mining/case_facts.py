"""`case_facts`: what one case contributes to a process's figures, from its events in order.

The read models fold cases, not events: a case's facts (its trace, its steps with their
waits, its hand-offs, its rework, its duration) are computed from its events once it changes,
and added to or taken out of the figures with a sign (`mining.figures.Figures.add`). The
definitions are the batch mining's, case by case, so that a sum of facts equals `summarize`:
- steps and waits are `mining.dfg`'s (each event and the next one of its case);
- hand-offs are `mining.handoffs`' (consecutive events of two known, different teams);
- rework is `mining.rework`'s, over the case's completions (``mining.rework.EXECUTION``, the
  basis the batch uses whenever a process has completions, which every real log has): an execution repeats an
  activity when the case did it before, a self-loop when directly before, a loop otherwise, a
  repeat when the same known resource did both, a redo when another did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from mining.rework import EXECUTION, MAX_CYCLE_LENGTH, canonical
from schemas.event import CaseEvent

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Rework:
    """One activity the case did again, and how (each flag: at least one execution so)."""

    activity: str
    self_loop: bool
    loop: bool
    repeat: bool
    redo: bool


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What one case contributes to its process's figures."""

    trace: tuple[str, ...]
    first_us: int
    last_us: int
    steps: tuple[tuple[str, str, int], ...]
    """(source, target, wait in microseconds) per pair of consecutive events."""
    handoffs: tuple[tuple[str, str, int], ...]
    """(from team, to team, wait in microseconds) per pair that changes team."""
    rework: tuple[Rework, ...]
    loops: tuple[tuple[str, ...], ...] = ()
    """The simple cycles the case went round (``loops_of``), each once."""
    business_us: int | None = None
    """Working time from the first event to the last in the process's calendar (None where
    the folder has no calendar)."""

    def to_doc(self) -> list[Any]:
        """The facts as JSON-ready lists (how the store keeps an open case)."""
        return [list(self.trace), self.first_us, self.last_us, [list(s) for s in self.steps],
                [list(h) for h in self.handoffs],
                [[r.activity, r.self_loop, r.loop, r.repeat, r.redo] for r in self.rework],
                [list(c) for c in self.loops], self.business_us]

    @classmethod
    def from_doc(cls, doc: Sequence[Any]) -> CaseFacts:
        """The facts `to_doc` described."""
        trace, first, last, steps, handoffs, rework, loops, business = doc
        return cls(tuple(trace), int(first), int(last), tuple((a, b, int(w)) for a, b, w in steps),
                   tuple((a, b, int(w)) for a, b, w in handoffs),
                   tuple(Rework(a, bool(s), bool(lp), bool(rp), bool(rd)) for a, s, lp, rp, rd in rework),
                   tuple(tuple(c) for c in loops), None if business is None else int(business))

    @property
    def start(self) -> str:
        """The first activity."""
        return self.trace[0]

    @property
    def end(self) -> str:
        """The last activity."""
        return self.trace[-1]

    @property
    def duration_us(self) -> int:
        """From the first event to the last, in microseconds."""
        return self.last_us - self.first_us


def _rework(events: Sequence[CaseEvent]) -> tuple[Rework, ...]:
    """The activities re-executed among the case's completions, by activity name."""
    last: dict[str, tuple[int, str | None]] = {}  # activity -> (position, resource) of its last execution
    flags: dict[str, list[bool]] = {}
    position = 0
    for event in events:
        if event.lifecycle != EXECUTION:
            continue
        before = last.get(event.activity)
        if before is not None:
            gap, previous = position - before[0], before[1]
            known = event.resource is not None and previous is not None
            seen = flags.setdefault(event.activity, [False, False, False, False])
            seen[0] |= gap == 1
            seen[1] |= gap > 1
            seen[2] |= known and event.resource == previous
            seen[3] |= known and event.resource != previous
        last[event.activity] = (position, event.resource)
        position += 1
    return tuple(Rework(a, *f) for a, f in sorted(flags.items()))


def loops_of(events: Sequence[CaseEvent],
             max_length: int = MAX_CYCLE_LENGTH) -> tuple[tuple[str, ...], ...]:
    """The simple cycles (at most ``max_length`` activities, each in its canonical rotation)
    the case's completions go round, sorted: ``k`` consecutive distinct activities followed by
    the first of them again (``a, a`` for a self-loop), ``mining.rework.discover_loops``' rule
    for one case."""
    trace = [e.activity for e in events if e.lifecycle == EXECUTION]
    found: set[tuple[str, ...]] = set()
    for i, first in enumerate(trace):
        seen = {first}
        for j in range(i + 1, min(i + max_length, len(trace) - 1) + 1):
            if trace[j] == first:
                found.add(canonical(trace[i:j]))
                break
            if trace[j] in seen:
                break
            seen.add(trace[j])
    return tuple(sorted(found))


def case_facts(events: Sequence[CaseEvent]) -> CaseFacts:
    """The facts of one case from its events in case order (time, then arrival); at least one."""
    if not events:
        raise ValueError("a case has at least one event")
    steps: list[tuple[str, str, int]] = []
    handoffs: list[tuple[str, str, int]] = []
    for before, after in pairwise(events):
        wait = after.time_us - before.time_us
        steps.append((before.activity, after.activity, wait))
        if before.team is not None and after.team is not None and before.team != after.team:
            handoffs.append((before.team, after.team, wait))
    return CaseFacts(
        trace=tuple(e.activity for e in events),
        first_us=events[0].time_us,
        last_us=events[-1].time_us,
        steps=tuple(steps),
        handoffs=tuple(handoffs),
        rework=_rework(events),
        loops=loops_of(events),
    )
