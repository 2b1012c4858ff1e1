"""Live maps per process over Kafka partitions: `LiveDfg`s (mining/live.py) per lane, summed.

`LiveMaps` keeps one `LiveDfg` per (process, lane), a lane being the Kafka topic
and partition an event came through, and sums the lanes for reads (`LiveView`). Events are
keyed by case id, so a case lives in one lane and a DFG, a sum over cases, is the sum of its
lanes' DFGs. A consumer in a group follows only its partitions (`LiveMaps.follow`): on a
rebalance it drops the lanes it lost and builds the lanes it got from the store, page by page.
So an instance's live map is the state of its own partitions, the sum over the group's
instances equals the DFG of the store, and nothing is counted twice. What users see (the web
app, alert rules) is read from the store, so it is the same whichever instance serves it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from itertools import repeat
from typing import Any

from mining.live import LiveDfg, LiveReads
from schemas.event import CaseEvent
from schemas.frame import Coordinates

Batch = tuple[Sequence[CaseEvent], Sequence[Coordinates | None] | None]  # events, origins

class LiveView(LiveReads):
    """One process's live DFG summed over lanes (Kafka partitions): a copy taken at one moment.

    Exact as a sum because a DFG is a sum over cases and a case lives in one lane (events are
    keyed by case id). It reads as a `LiveDfg` does (`LiveReads`: `edge_counts`, `mean_waits`,
    `snapshot()`...).
    """

    def __init__(self, process: str | None, parts: Iterable[LiveDfg]) -> None:
        super().__init__(process)
        self._open_cases = self._tombstones = 0
        for part in parts:
            self._add_reads(part)
            self._open_cases += part.open_cases
            self._tombstones += part.tombstones

    @property
    def open_cases(self) -> int:
        """Cases whose events are held in full, in any lane."""
        return self._open_cases

    @property
    def tombstones(self) -> int:
        """Compacted cases whose last event is still remembered, in any lane."""
        return self._tombstones


class LiveMaps(Mapping[str, LiveView]):
    """Live DFGs per process, one `LiveDfg` per lane; a consumer subscriber as is.

    An event's lane is the Kafka (topic, partition) it came from (``origins``; else None);
    ``maps[process]`` sums the process's lanes (a `LiveView` copy). It follows every lane
    until `follow` names the lanes to follow (a consumer's partitions): then it drops the
    others, builds the new ones from the history handed over, and leaves other lanes'
    events out, so each followed lane holds exactly its events up to the map's position.
    """

    def __init__(self, *, end_activities: Mapping[str, Collection[str]] | None = None,
                 idle_horizon: timedelta = timedelta(days=30), retain: timedelta | None = None,
                 lifecycle: str | None = None) -> None:
        self._ends = {p: tuple(a) for p, a in (end_activities or {}).items()}
        self._options: dict[str, Any] = {"idle_horizon": idle_horizon, "retain": retain,
                                         "lifecycle": lifecycle}
        LiveDfg(**self._options)  # check the options now, not on the first event
        self._maps: dict[str, dict[Hashable, LiveDfg]] = {}
        self._following: frozenset[Hashable] | None = None
        self._lock = threading.Lock()

    def _new(self, process: str) -> LiveDfg:
        return LiveDfg(process, end_activities=self._ends.get(process, ()), **self._options)

    def _fold(self, maps: dict[str, dict[Hashable, LiveDfg]], batch: Sequence[CaseEvent],
              origins: Sequence[Coordinates | None] | None,
              take: Callable[[Hashable], bool] | None) -> int:
        """Fold the events of the lanes ``take`` accepts (None: every lane) into ``maps``;
        return how many. Runs once per stored event: no per-event call it can avoid."""
        groups: dict[tuple[str, Hashable], list[CaseEvent]] = {}
        lanes: Iterable[Hashable] = repeat(None) if origins is None else [
            None if o is None else (o.topic, o.partition) for o in origins]
        for event, lane in zip(batch, lanes, strict=origins is not None):
            if take is None or take(lane):
                key = (event.process, lane)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = []
                group.append(event)
        for (process, lane), events in groups.items():
            parts = maps.setdefault(process, {})
            live = parts.get(lane)
            if live is None:
                live = parts[lane] = self._new(process)
            live.update(events)
        return sum(map(len, groups.values()))

    def __call__(self, batch: Sequence[CaseEvent],
                 origins: Sequence[Coordinates | None] | None = None) -> None:
        """Fold one stored batch in (the followed lanes' events), in batch order."""
        with self._lock:
            following = self._following
            self._fold(self._maps, batch, origins,
                       None if following is None else following.__contains__)

    @property
    def following(self) -> frozenset[Hashable] | None:
        """The lanes followed (None: every lane)."""
        return self._following

    @property
    def lanes(self) -> frozenset[Hashable]:
        """The lanes this map holds state for."""
        with self._lock:
            return frozenset(lane for parts in self._maps.values() for lane in parts)

    def follow(self, lanes: Collection[Hashable] | None, history: Iterable[Batch] = ()) -> int:
        """Follow exactly ``lanes`` from now on (None: every lane); return the events taken
        from ``history``.

        Lanes no longer followed are dropped (their cases handed over to whoever follows them
        now). Lanes newly followed are built from ``history``: every stored event up to this
        map's position, in store order, in batches; it is read only when some lane is new,
        one batch at a time, keeping only the new lanes' events. All or nothing: if reading
        the history raises, the map is as before (call again)."""
        target = None if lanes is None else frozenset(lanes)
        current = self._following

        def new(lane: Hashable) -> bool:
            return (target is None or lane in target) and not (current is None or lane in current)

        built: dict[str, dict[Hashable, LiveDfg]] = {}
        taken = 0
        if current is not None and (target is None or target - current):
            for events, origins in history:
                taken += self._fold(built, events, origins, new)
        with self._lock:
            for process in list(self._maps):
                parts = self._maps[process]
                for lane in [lane for lane in parts if target is not None and lane not in target]:
                    del parts[lane]
                if not parts:
                    del self._maps[process]
            for process, fresh in built.items():
                self._maps.setdefault(process, {}).update(fresh)
            self._following = target
        return taken

    def snapshot(self, process: str) -> dict[str, Any]:
        """Plain JSON-ready data of one process's live map (empty before its first event)."""
        with self._lock:
            parts = self._maps.get(process, {})
            return LiveView(process, parts.values()).snapshot()

    def __getitem__(self, process: str) -> LiveView:
        with self._lock:
            parts = self._maps[process]
            return LiveView(process, parts.values())

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._maps))

    def __len__(self) -> int:
        return len(self._maps)
