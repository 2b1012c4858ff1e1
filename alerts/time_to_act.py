"""Time to act, measured from the alert history: how long people took to acknowledge, resolve and
confirm what fired, how often it came back, and what nobody acknowledged. Pure: the changes
(``AlertChange``, oldest first, as ``AlertState.changes`` reads them) and a clock in, figures out.

**Episodes.** Per alert key, an episode opens with a FIRING change when the key has no open
episode (a FIRING while open is a severity rise: the same episode), or with a RECURRED change
(the condition came back within the recurrence window: the earlier episode counts as recurred,
and the time to act on the return is measured from the return). It is acknowledged at the
alert's ``acknowledged_at`` (or at the ACKNOWLEDGED change) given in that episode, resolved at
its first RESOLVED or ACCEPTED change (accepting the new level as normal ends the episode too),
confirmed at its CONFIRMED change. Its owner is the fix owner (``fix_owner``), else the person
who acknowledged it, else ``unowned``. ``current`` (the stored alerts) refreshes an open
episode with what was recorded since its last change (an acknowledgement given while it was
silenced sends no ACKNOWLEDGED change).

**Units: business hours**, counted on the process's working calendar (``WorkCalendar``, the
process's own or ``[alerts.calendar]``), as waits and SLAs are: an alert that fires on Friday
evening and is taken on at 09:30 on Monday took half an hour, not 62 hours. Times before the
firing (an acknowledgement given while the alert was still pending) count as 0.

**Figures** per group (overall, per process, per owner): how many episodes fired; for each of
acknowledge, resolve and confirm the count measured, the median and the 90th percentile
(linear interpolation between the closest ranks, as numpy's default); how many episodes
recurred and their share of the resolved ones; how many were never acknowledged (open or closed).

**Window.** ``report(..., since=...)`` counts the episodes that fired at or after ``since`` (the
store reads the changes from ``since`` on: such an episode's later changes are all after it);
the report says which window it covers (``window``: its days and ``since``; None for all).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from schemas.alerts import Alert, AlertChange, Change

UNOWNED = "unowned"
UNIT = "business hours"
Hours = Callable[[str, datetime, datetime], float]
"""Business hours between two moments on one process's calendar: ``hours(process, a, b)``."""


@dataclass(frozen=True)
class Episode:
    """One firing episode of one alert and when it was acted on."""

    key: str
    process: str
    rule: str
    fired_at: datetime
    owner: str = UNOWNED
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    """Resolved, or accepted as the new normal."""
    confirmed_at: datetime | None = None
    recurred: bool = False
    opened_at: datetime | None = None
    """Since when an acknowledgement counts for it (its ``first_seen``, or its return)."""


@dataclass(frozen=True)
class Spread:
    """How many were measured, and their median and 90th percentile in business hours."""

    count: int = 0
    median: float | None = None
    p90: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "median_hours": _round(self.median),
                "p90_hours": _round(self.p90)}


@dataclass(frozen=True)
class TimeToAct:
    """The figures of one group of episodes (all, one process, or one owner)."""

    episodes: int = 0
    acknowledge: Spread = field(default_factory=Spread)
    resolve: Spread = field(default_factory=Spread)
    confirm: Spread = field(default_factory=Spread)
    recurred: int = 0
    resolved: int = 0
    never_acknowledged: int = 0

    @property
    def recurred_share(self) -> float | None:
        """The share of the resolved episodes that came back (None before any resolved)."""
        return self.recurred / self.resolved if self.resolved else None

    def to_json(self) -> dict[str, Any]:
        share = self.recurred_share
        return {"episodes": self.episodes, "acknowledge": self.acknowledge.to_json(),
                "resolve": self.resolve.to_json(), "confirm": self.confirm.to_json(),
                "recurred": self.recurred, "resolved": self.resolved,
                "recurred_share": None if share is None else round(share, 4),
                "never_acknowledged": self.never_acknowledged}


@dataclass(frozen=True)
class Report:
    """Time to act overall, per process and per owner (groups sorted by name)."""

    overall: TimeToAct
    processes: Mapping[str, TimeToAct]
    owners: Mapping[str, TimeToAct]
    since: datetime | None = None
    """The episodes counted fired at or after this (None: the whole history)."""
    window: timedelta | None = None
    """The window ``since`` was taken from (``since`` = now - window)."""

    def window_json(self) -> dict[str, Any] | None:
        """Which window the figures cover: its length in days and its start (None for all)."""
        if self.since is None:
            return None
        days = None if self.window is None else round(self.window / timedelta(days=1), 4)
        return {"days": days, "since": self.since.isoformat()}

    def to_json(self) -> dict[str, Any]:
        """The shape ``GET /api/time-to-act`` returns."""
        return {"unit": UNIT, "window": self.window_json(), "overall": self.overall.to_json(),
                "processes": {k: v.to_json() for k, v in self.processes.items()},
                "owners": {k: v.to_json() for k, v in self.owners.items()}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    place = q * (len(ordered) - 1)
    low = math.floor(place)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (place - low)


def spread(values: Sequence[float]) -> Spread:
    """Count, median and p90 of some durations."""
    return Spread(len(values), quantile(values, 0.5), quantile(values, 0.9))


def _owner(alert: Alert, fallback: str) -> str:
    return alert.fix_owner or alert.acknowledged_by or fallback


def _with(episode: Episode, alert: Alert) -> Episode:
    """The episode refreshed from the alert as one of its changes (or the state) carries it."""
    ack = alert.acknowledged_at
    opened = episode.opened_at or episode.fired_at
    if episode.acknowledged_at is None and ack is not None and ack >= opened:
        episode = replace(episode, acknowledged_at=ack)
    if episode.acknowledged_at is not None or alert.fix_owner:
        episode = replace(episode, owner=_owner(alert, episode.owner))
    return episode


def episodes(changes: Iterable[AlertChange],
             current: Mapping[str, Alert] | None = None) -> list[Episode]:
    """The episodes of some changes (oldest first), in the order they opened."""
    found: list[Episode] = []
    last: dict[str, int] = {}  # key -> index in found of its latest episode
    for change in changes:
        alert, kind, key = change.alert, change.change, change.alert.key
        index = last.get(key)
        latest = found[index] if index is not None else None
        if kind in (Change.FIRING, Change.RECURRED):
            same_round = latest is not None and latest.opened_at == change.at
            if kind is Change.RECURRED and same_round and index is not None:
                before = _before(found, key, index)  # FIRING came first in this round
                if before is not None:
                    found[before] = replace(found[before], recurred=True)
                continue
            if kind is Change.FIRING and (same_round or (latest is not None
                                                         and latest.resolved_at is None)):
                continue  # the return already opened it, or a rise within the episode
            if kind is Change.RECURRED and index is not None:
                found[index] = replace(found[index], recurred=True)
            start = change.at if kind is Change.RECURRED else (alert.fired_at or change.at)
            opened = change.at if kind is Change.RECURRED else alert.first_seen
            episode = Episode(key, alert.process, alert.rule, start, opened_at=opened)
            last[key] = len(found)
            found.append(_with(episode, alert) if kind is Change.FIRING else episode)
            continue
        if latest is None or index is None:
            continue  # history that began before the firing was recorded
        latest = _with(latest, alert)
        if kind is Change.ACKNOWLEDGED and latest.acknowledged_at is None:
            latest = replace(latest, acknowledged_at=change.at,
                             owner=_owner(alert, latest.owner))
        elif kind in (Change.RESOLVED, Change.ACCEPTED) and latest.resolved_at is None:
            moment = alert.accepted_at if kind is Change.ACCEPTED else alert.resolved_at
            latest = replace(latest, resolved_at=moment or change.at)
        elif kind is Change.CONFIRMED and latest.confirmed_at is None:
            latest = replace(latest, confirmed_at=alert.confirmed_at or change.at)
        found[index] = latest
    for key, index in last.items():
        now = (current or {}).get(key)
        if now is not None and found[index].resolved_at is None:
            found[index] = _with(found[index], now)
    return found


def _before(found: list[Episode], key: str, index: int) -> int | None:
    return next((i for i in range(index - 1, -1, -1) if found[i].key == key), None)


def figures(group: Sequence[Episode], hours: Hours) -> TimeToAct:
    """The time-to-act figures of some episodes."""
    def since_fired(e: Episode, moment: datetime | None) -> float | None:
        if moment is None:
            return None
        return 0.0 if moment <= e.fired_at else hours(e.process, e.fired_at, moment)

    def measured(pick: Callable[[Episode], datetime | None]) -> Spread:
        values = [since_fired(e, pick(e)) for e in group]
        return spread([v for v in values if v is not None])

    return TimeToAct(
        episodes=len(group), acknowledge=measured(lambda e: e.acknowledged_at),
        resolve=measured(lambda e: e.resolved_at), confirm=measured(lambda e: e.confirmed_at),
        recurred=sum(e.recurred for e in group),
        resolved=sum(e.resolved_at is not None for e in group),
        never_acknowledged=sum(e.acknowledged_at is None for e in group))


def report(found: Sequence[Episode], hours: Hours, since: datetime | None = None,
           window: timedelta | None = None) -> Report:
    """Time to act overall, per process and per owner, of the episodes that fired at or after
    ``since`` (all if None)."""
    if since is not None:
        found = [e for e in found if e.fired_at >= since]

    def grouped(by: Callable[[Episode], str]) -> dict[str, TimeToAct]:
        groups: dict[str, list[Episode]] = {}
        for e in found:
            groups.setdefault(by(e), []).append(e)
        return {name: figures(groups[name], hours) for name in sorted(groups)}

    return Report(figures(found, hours), grouped(lambda e: e.process), grouped(lambda e: e.owner),
                  since, window)
