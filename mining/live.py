"""Live directly-follows graph: a river-style incremental DFG per process, exact under late events.

`LiveDfg.update(events)` folds case events into edge counts, exact waiting-time sums and
start/end counts. Each open case keeps its events sorted by (time_us, arrival order), one int
key per event; an event landing inside a case retracts the edge it splits and adds the two it
creates (a bisect finds the place), and moves the start or end count when it lands first or
last. Re-deliveries of an event the case holds are ignored.

Bounded memory. At the end of each `update` a case is *compacted* when its last event (in time
order) is one of `end_activities`, or when it had no event for more than `idle_horizon` of
event time (watermark = latest event time seen; one map per Kafka partition, so that a
partition read ahead of the others does not make a lagging one's cases look idle). Its counts
stay; its events go, except a *tombstone* of its last event (key, activity, event_id), kept
for at least `retain` (default `idle_horizon`) of watermark progress. An event for a
tombstoned case that sorts after that last event *reopens* the case with it as anchor,
exactly; one that sorts before cannot be placed and is left out (`skipped_events`). State
follows the cases active in about two horizons.

Exactness. Let E be the distinct events (by event_id; of `lifecycle` if given) passed so far,
each case ordered by (time_us, order of first arrival): `mining.discover_dfg` on a frame of E
whose `seq` is the order of first arrival. `edge_counts`, `wait_sums_us` (so `mean_waits`, up
to float division), `start_activities`, `end_activities`, `events` and `cases` equal that batch
result whenever no event arrives for a case after it was compacted. More precisely they stay
equal while every event arriving for a compacted case (1) comes while its tombstone is held,
(2) sorts after the case's last event at compaction (a later time, or the same time: ties go
by arrival), and (3) is not a re-delivery of a compacted event other than that last one (the
store's unique event_id rules this out). Breaking (2) shows in `skipped_events`; breaking (1)
or (3) cannot be seen (the event starts a new case, or counts twice).
Not thread-safe; `LiveMaps` (mining/live_maps.py) serialises updates and snapshots with a lock.

Merging (river-style). `a.merge(b)` folds in a map of the same process and options fed other
cases: the result reads as one map fed both streams (a DFG is a sum over cases), and takes
further events as it would. The read API (`LiveReads`) is shared with `LiveView`, the sum of a
process's maps over partitions (mining/live_maps.py: `LiveMaps`, one `LiveDfg` per partition).
"""

from __future__ import annotations

import abc
import heapq
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Self

from mining.counts import bump, ranked
from mining.errors import FrameError, LiveMergeError
from schemas.event import LIFECYCLES, CaseEvent, format_time

_B: Final = 64  # sort key = time_us * 2**64 + arrival seq: (time, arrival) order in one int
Pair = tuple[str, str]


def _micros(span: timedelta) -> int:
    """Whole microseconds in a non-negative timedelta."""
    if span < timedelta(0):
        raise ValueError(f"horizon {span} must not be negative")
    return span // timedelta(microseconds=1)


def _add(into: dict[Any, int], counts: Mapping[Any, int]) -> None:
    """Add counts into a counter."""
    for key, value in counts.items():
        into[key] = into.get(key, 0) + value


class _Tomb(NamedTuple):
    """What a compacted case keeps: its last event, until the watermark passes `expires`."""

    key: int
    activity: str
    event_id: str
    expires: int


class _Case:
    """An open case: sort keys and activities in (time, arrival) order, event ids held."""

    __slots__ = ("acts", "anchored", "ids", "keys")

    def __init__(self, anchor: _Tomb | None = None) -> None:
        self.keys: list[int] = [] if anchor is None else [anchor.key]
        self.acts: list[str] = [] if anchor is None else [anchor.activity]
        self.ids: dict[str, int] = {} if anchor is None else {anchor.event_id: anchor.key}
        self.anchored = anchor is not None  # keys[0] is a compacted case's last event

    def copy(self) -> _Case:
        twin = _Case()
        twin.keys, twin.acts, twin.ids = list(self.keys), list(self.acts), dict(self.ids)
        twin.anchored = self.anchored
        return twin


STATE: Final = ("open_cases", "tombstones", "compacted_cases", "late_events", "reopened_cases",
                "skipped_events", "duplicates")
"""The state figures of a live map (its snapshot's ``state``)."""


class LiveReads(abc.ABC):
    """What a live map reads as, whether one `LiveDfg` or a `LiveView` summing several: the
    DFG's counts (read-only views; copy them to keep a value across updates) and its state."""

    def __init__(self, process: str | None) -> None:
        self.process = process
        self._counts: dict[Pair, int] = {}
        self._waits: dict[Pair, int] = {}  # sum of waits in microseconds, exact
        self._starts, self._ends = dict[str, int](), dict[str, int]()  # first / last activity counts
        self._mark: int | None = None  # the watermark
        self._events = self._cases = self._compacted = self._late = 0
        self._reopened = self._skipped = self._duplicates = 0

    def _add_reads(self, other: LiveReads) -> None:
        """Add another map's counts and figures to these (a sum over disjoint cases)."""
        _add(self._counts, other._counts)
        _add(self._waits, other._waits)
        _add(self._starts, other._starts)
        _add(self._ends, other._ends)
        if other._mark is not None and (self._mark is None or other._mark > self._mark):
            self._mark = other._mark
        self._events += other._events
        self._cases += other._cases
        self._compacted += other._compacted
        self._late += other._late
        self._reopened += other._reopened
        self._skipped += other._skipped
        self._duplicates += other._duplicates

    @property
    def edge_counts(self) -> Mapping[Pair, int]:
        """How often target directly follows source, keyed by (source, target)."""
        return MappingProxyType(self._counts)

    @property
    def wait_sums_us(self) -> Mapping[Pair, int]:
        """Sum of the waits (next time - time) per edge, in microseconds."""
        return MappingProxyType(self._waits)

    @property
    def mean_waits(self) -> dict[Pair, float]:
        """Mean wait per edge in seconds (exact sum / count)."""
        return {pair: self._waits[pair] / n / 1e6 for pair, n in self._counts.items()}

    @property
    def start_activities(self) -> Mapping[str, int]:
        """First activity of each case, counted."""
        return MappingProxyType(self._starts)

    @property
    def end_activities(self) -> Mapping[str, int]:
        """Last activity of each case, counted."""
        return MappingProxyType(self._ends)

    @property
    def events(self) -> int:
        """Events in the graph (duplicates and skipped events excluded)."""
        return self._events

    @property
    def cases(self) -> int:
        """Cases in the graph, open and compacted."""
        return self._cases

    @property
    def watermark_us(self) -> int | None:
        """Latest event time seen (UTC microseconds), None before the first event."""
        return self._mark

    @property
    @abc.abstractmethod
    def open_cases(self) -> int:
        """Cases whose events are held in full."""

    @property
    @abc.abstractmethod
    def tombstones(self) -> int:
        """Compacted cases whose last event is still remembered."""

    @property
    def compacted_cases(self) -> int:
        """Compactions so far (a reopened case compacts again)."""
        return self._compacted

    @property
    def late_events(self) -> int:
        """Events that landed before an event their case already held (delta-retracted)."""
        return self._late

    @property
    def reopened_cases(self) -> int:
        """Compacted cases reopened by an event sorting after their last event (exact)."""
        return self._reopened

    @property
    def skipped_events(self) -> int:
        """Events left out: they sorted before a compacted case's last event (inexact)."""
        return self._skipped

    @property
    def duplicates(self) -> int:
        """Re-delivered events ignored (event_id held by an open case or a tombstone)."""
        return self._duplicates

    def snapshot(self) -> dict[str, Any]:
        """The live map as plain JSON-ready data (the shape of `mine --format json`, in part)."""
        dfg = [
            {"source": s, "target": t, "count": n,
             "wait_seconds": {"mean": round(self._waits[(s, t)] / n / 1e6, 3)}}
            for (s, t), n in sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        return {
            "process": self.process, "events": self.events, "cases": self.cases,
            "watermark": None if self._mark is None else format_time(self._mark),
            "start_activities": ranked(self._starts),
            "end_activities": ranked(self._ends), "dfg": dfg,
            "state": {name: getattr(self, name) for name in STATE},
        }


class LiveDfg(LiveReads):
    """Stateful live DFG of one process: `update(events)` then read the properties."""

    def __init__(self, process: str | None = None, *, end_activities: Collection[str] = (),
                 idle_horizon: timedelta = timedelta(days=30), retain: timedelta | None = None,
                 lifecycle: str | None = None) -> None:
        if lifecycle is not None and lifecycle not in LIFECYCLES:
            raise FrameError(f"unknown lifecycle {lifecycle!r}; allowed: {LIFECYCLES}")
        super().__init__(process)
        self.lifecycle = lifecycle
        self.closing: frozenset[str] = frozenset(end_activities)
        self.idle_horizon_us = _micros(idle_horizon)
        self.retain_us = self.idle_horizon_us if retain is None else _micros(retain)
        self._open: dict[str, _Case] = {}
        self._tombs: dict[str, _Tomb] = {}
        self._due: list[tuple[int, str]] = []  # (when to look again, case) per open/tomb case
        self._names: dict[str, str] = {}  # one string object per activity name
        self._seq = 0

    @property
    def open_cases(self) -> int:
        """Cases whose events are held in full."""
        return len(self._open)

    @property
    def tombstones(self) -> int:
        """Compacted cases whose last event is still remembered."""
        return len(self._tombs)

    # -- updates --
    def update(self, events: Iterable[CaseEvent]) -> Self:
        """Fold a batch of events in; then close and compact cases. Returns self."""
        touched: set[str] = set()
        process, lifecycle, place, touch = self.process, self.lifecycle, self._place, touched.add
        for event in events:
            if process is not None and event.process != process:
                raise ValueError(f"event {event.event_id!r} is of process {event.process!r}, "
                                 f"not {process!r}")
            if (lifecycle is None or event.lifecycle == lifecycle) and place(event):
                touch(event.case_id)
        for case_id in touched:
            case = self._open.get(case_id)
            if case is not None and case.acts[-1] in self.closing:
                self._compact(case_id, case)
        self._sweep()
        return self

    def _place(self, event: CaseEvent) -> bool:
        """Insert one event into its case and apply the deltas; False if ignored."""
        case_id, time_us, event_id = event.case_id, event.time_us, event.event_id
        case = self._open.get(case_id)
        if case is not None and event_id in case.ids:
            self._duplicates += 1
            return False
        key = (time_us << _B) + self._seq
        mark = self._mark
        if mark is None or time_us > mark:
            self._mark = time_us
        if case is None:
            tomb = self._tombs.get(case_id)
            if tomb is None:
                case = self._open[case_id] = _Case()
                self._cases += 1
                heapq.heappush(self._due, (time_us + self.idle_horizon_us, case_id))
            elif event_id == tomb.event_id:
                self._duplicates += 1
                return False
            elif key < tomb.key:
                self._skipped += 1
                return False
            else:
                del self._tombs[case_id]
                case = self._open[case_id] = _Case(tomb)
                self._reopened += 1
        keys, acts = case.keys, case.acts
        n, pos = len(keys), bisect_right(keys, key)
        if pos == 0 and case.anchored:
            self._skipped += 1
            return False
        act = self._names.setdefault(event.activity, event.activity)
        if pos == n and n:  # the usual case, the case's next step: _edge and bump inlined
            prev, pair, ends = acts[-1], (acts[-1], act), self._ends
            self._counts[pair] = self._counts.get(pair, 0) + 1
            self._waits[pair] = self._waits.get(pair, 0) + time_us - (keys[-1] >> _B)
            left = ends.get(prev, 0) - 1
            if left:
                ends[prev] = left
            else:
                del ends[prev]
            ends[act] = ends.get(act, 0) + 1
            keys.append(key)
            acts.append(act)
            case.ids[event_id] = key
            self._seq += 1
            self._events += 1
            return True
        if 0 < pos < n:  # lands inside: the edge it splits goes
            self._edge(acts[pos - 1], acts[pos], (keys[pos] >> _B) - (keys[pos - 1] >> _B), -1)
        if pos > 0:
            self._edge(acts[pos - 1], act, time_us - (keys[pos - 1] >> _B), 1)
        else:
            if n:
                bump(self._starts, acts[0], -1)
            bump(self._starts, act, 1)
        if pos < n:
            self._edge(act, acts[pos], (keys[pos] >> _B) - time_us, 1)
            self._late += 1
        else:
            if n:
                bump(self._ends, acts[-1], -1)
            bump(self._ends, act, 1)
        keys.insert(pos, key)
        acts.insert(pos, act)
        case.ids[event_id] = key
        self._seq += 1
        self._events += 1
        return True

    def _edge(self, source: str, target: str, wait_us: int, sign: int) -> None:
        pair = (source, target)
        bump(self._counts, pair, sign)
        if pair in self._counts:
            self._waits[pair] = self._waits.get(pair, 0) + sign * wait_us
        else:
            self._waits.pop(pair, None)

    def _compact(self, case_id: str, case: _Case) -> None:
        """Drop a case's events, keeping its last one as a tombstone."""
        last = case.keys[-1]
        event_id = next(i for i, k in case.ids.items() if k == last)
        assert self._mark is not None  # the case holds an event
        self._tombs[case_id] = _Tomb(last, case.acts[-1], event_id, self._mark + self.retain_us)
        del self._open[case_id]
        self._compacted += 1

    def _sweep(self) -> None:
        """Compact idle cases and drop expired tombstones (a lazy heap)."""
        mark, due = self._mark, self._due
        if mark is None:
            return
        while due and due[0][0] < mark:
            _, case_id = heapq.heappop(due)
            case = self._open.get(case_id)
            if case is not None:
                when = (case.keys[-1] >> _B) + self.idle_horizon_us
                if when < mark:
                    self._compact(case_id, case)
                    when = self._tombs[case_id].expires
                heapq.heappush(due, (when, case_id))
            elif (tomb := self._tombs.get(case_id)) is not None:
                if tomb.expires < mark:
                    del self._tombs[case_id]
                else:
                    heapq.heappush(due, (tomb.expires, case_id))

    def merge(self, other: LiveDfg) -> Self:
        """Fold in ``other``, a map of the same process and options fed other cases: this map
        then reads as one fed both streams, and takes further events as that one would (its
        watermark the later of the two; idle cases compacted by it). ``other`` is left as it
        was. Returns self; LiveMergeError if the options differ or a case is in both."""
        if other is self:
            raise LiveMergeError("a live map cannot be merged with itself")
        if self._options() != other._options():
            raise LiveMergeError(f"live maps with other options cannot be merged: "
                                 f"{self._options()} and {other._options()}")
        mine = self._open.keys() | self._tombs.keys()
        shared = sorted(mine & (other._open.keys() | other._tombs.keys()))
        if shared:
            raise LiveMergeError(f"live maps fed the same cases cannot be merged: {shared[:5]}")
        self._add_reads(other)
        self._open.update((case_id, case.copy()) for case_id, case in other._open.items())
        self._tombs.update(other._tombs)
        self._due.extend(other._due)
        heapq.heapify(self._due)
        for name in other._names:
            self._names.setdefault(name, name)
        self._seq = max(self._seq, other._seq)  # later arrivals sort after both maps' events
        self._sweep()
        return self

    def _options(self) -> tuple[object, ...]:
        return (self.process, self.lifecycle, sorted(self.closing), self.idle_horizon_us,
                self.retain_us)
