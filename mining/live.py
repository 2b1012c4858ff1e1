"""Live directly-follows graph: a river-style incremental DFG per process, exact under late events.

`LiveDfg.update(events)` folds case events into edge counts, exact waiting-time sums and
start/end counts. Each open case keeps its events sorted by (time_us, arrival order), one int
key per event; an event landing inside a case retracts the edge it splits and adds the two it
creates (a bisect finds the place), and moves the start or end count when it lands first or
last. Re-deliveries of an event the case holds are ignored.

Bounded memory. At the end of each `update` a case is *compacted* when its last event (in time
order) is one of `end_activities`, or when it had no event for more than `idle_horizon` of
event time (watermark = latest event time seen). Its counts stay; its events go, except a
*tombstone* of its last event (key, activity, event_id), kept for at least `retain` (default
`idle_horizon`) of watermark progress. An event for a tombstoned case that sorts after that
last event *reopens* the case with it as anchor, exactly; one that sorts before cannot be placed
and is left out (`skipped_events`). State follows the cases active in about two horizons.

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

Partitions: mining/live_maps.py (`LiveMaps`, one `LiveDfg` per Kafka partition).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from datetime import timedelta
from itertools import repeat
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Self

from mining.counts import bump, ranked
from mining.errors import FrameError
from schemas.event import LIFECYCLES, CaseEvent, format_time
from schemas.frame import Coordinates

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
    """What a compacted case keeps: its last event, until its lane's watermark passes `expires`."""

    key: int
    activity: str
    event_id: str
    expires: int
    lane: Hashable


class _Case:
    """An open case: sort keys and activities in (time, arrival) order, event ids held."""

    __slots__ = ("acts", "anchored", "ids", "keys", "lane")

    def __init__(self, lane: Hashable, anchor: _Tomb | None = None) -> None:
        self.lane = lane
        self.keys: list[int] = [] if anchor is None else [anchor.key]
        self.acts: list[str] = [] if anchor is None else [anchor.activity]
        self.ids: dict[str, int] = {} if anchor is None else {anchor.event_id: anchor.key}
        self.anchored = anchor is not None  # keys[0] is a compacted case's last event


class LiveDfg:
    """Stateful live DFG of one process: `update(events)` then read the properties."""

    def __init__(self, process: str | None = None, *, end_activities: Collection[str] = (),
                 idle_horizon: timedelta = timedelta(days=30), retain: timedelta | None = None,
                 lifecycle: str | None = None) -> None:
        if lifecycle is not None and lifecycle not in LIFECYCLES:
            raise FrameError(f"unknown lifecycle {lifecycle!r}; allowed: {LIFECYCLES}")
        self.process, self.lifecycle = process, lifecycle
        self.closing: frozenset[str] = frozenset(end_activities)
        self.idle_horizon_us = _micros(idle_horizon)
        self.retain_us = self.idle_horizon_us if retain is None else _micros(retain)
        self._open: dict[str, _Case] = {}
        self._tombs: dict[str, _Tomb] = {}
        # Per lane (a Kafka partition: all events of a case come through one), its watermark
        # (latest event time seen) and a heap of (when to look again, case) per open/tomb case.
        # Idle and expiry are judged by the case's own lane, so a partition read ahead of the
        # others does not make the cases of a lagging one look idle.
        self._marks: dict[Hashable, int] = {}
        self._due: dict[Hashable, list[tuple[int, str]]] = {}
        self._counts: dict[Pair, int] = {}
        self._waits: dict[Pair, int] = {}  # sum of waits in microseconds, exact
        self._starts, self._ends = dict[str, int](), dict[str, int]()  # first / last activity counts
        self._names: dict[str, str] = {}  # one string object per activity name
        self._seq = 0
        self._events = self._cases = self._compacted = self._late = 0
        self._reopened = self._skipped = self._duplicates = 0

    # -- results (read-only views; copy them to keep a value across updates) --
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
        """Latest event time seen in any lane (UTC microseconds), None before the first event."""
        return max(self._marks.values(), default=None)

    @property
    def open_cases(self) -> int:
        """Cases whose events are held in full."""
        return len(self._open)

    @property
    def tombstones(self) -> int:
        """Compacted cases whose last event is still remembered."""
        return len(self._tombs)

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

    # -- updates --
    def update(self, events: Iterable[CaseEvent], lanes: Iterable[Hashable] | None = None) -> Self:
        """Fold a batch of events in; then close and compact cases. Returns self.

        ``lanes`` gives each event's lane (e.g. its Kafka topic and partition); without it all
        events share one lane. A case stays in the lane of its first event.
        """
        touched: set[str] = set()
        pairs = zip(events, repeat(None)) if lanes is None else zip(events, lanes, strict=True)
        process, lifecycle, place, touch = self.process, self.lifecycle, self._place, touched.add
        for event, lane in pairs:
            if process is not None and event.process != process:
                raise ValueError(f"event {event.event_id!r} is of process {event.process!r}, "
                                 f"not {process!r}")
            if (lifecycle is None or event.lifecycle == lifecycle) and place(event, lane):
                touch(event.case_id)
        for case_id in touched:
            case = self._open.get(case_id)
            if case is not None and case.acts[-1] in self.closing:
                self._compact(case_id, case)
        self._sweep()
        return self

    def _place(self, event: CaseEvent, lane: Hashable) -> bool:
        """Insert one event into its case and apply the deltas; False if ignored."""
        case_id, time_us, event_id = event.case_id, event.time_us, event.event_id
        case = self._open.get(case_id)
        if case is not None and event_id in case.ids:
            self._duplicates += 1
            return False
        key = (time_us << _B) + self._seq
        if case is not None:
            lane = case.lane
        elif (tomb := self._tombs.get(case_id)) is not None:
            lane = tomb.lane
        if time_us > self._marks.get(lane, time_us - 1):
            self._marks[lane] = time_us
        if case is None:
            tomb = self._tombs.get(case_id)
            if tomb is None:
                case = self._open[case_id] = _Case(lane)
                self._cases += 1
                heapq.heappush(self._due.setdefault(lane, []),
                               (time_us + self.idle_horizon_us, case_id))
            elif event_id == tomb.event_id:
                self._duplicates += 1
                return False
            elif key < tomb.key:
                self._skipped += 1
                return False
            else:
                del self._tombs[case_id]
                case = self._open[case_id] = _Case(lane, tomb)
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
        expires = self._marks[case.lane] + self.retain_us
        self._tombs[case_id] = _Tomb(last, case.acts[-1], event_id, expires, case.lane)
        del self._open[case_id]
        self._compacted += 1

    def _sweep(self) -> None:
        """Compact idle cases and drop expired tombstones, lane by lane (lazy heaps)."""
        for lane, due in self._due.items():
            self._sweep_lane(self._marks[lane], due)

    def _sweep_lane(self, mark: int, due: list[tuple[int, str]]) -> None:
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

    def snapshot(self) -> dict[str, Any]:
        """The live map as plain JSON-ready data (the shape of `mine --format json`, in part)."""
        return snapshot(self)


Batch = tuple[Sequence[CaseEvent], Sequence[Coordinates | None] | None]  # events, origins


TOTALS = ("events", "cases", "open_cases", "tombstones", "compacted_cases", "late_events",
          "reopened_cases", "skipped_events", "duplicates")
"""The state figures of a live map, summed over lanes by `LiveView`."""


def snapshot(live: LiveDfg | Any) -> dict[str, Any]:
    """A live map (a `LiveDfg` or a `LiveView`) as plain JSON-ready data (the shape of
    `mine --format json`, in part)."""
    dfg = [
        {"source": s, "target": t, "count": n,
         "wait_seconds": {"mean": round(live.wait_sums_us[(s, t)] / n / 1e6, 3)}}
        for (s, t), n in sorted(live.edge_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return {
        "process": live.process, "events": live.events, "cases": live.cases,
        "watermark": None if live.watermark_us is None else format_time(live.watermark_us),
        "start_activities": ranked(live.start_activities),
        "end_activities": ranked(live.end_activities), "dfg": dfg,
        "state": {name: getattr(live, name) for name in TOTALS[2:]},
    }
