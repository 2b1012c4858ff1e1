"""Synthetic onboarding, payments and claims cases in working hours, with injected anomalies.

The processes' flow tables (steps, arrival rates, attributes, teams) are
``ingest.simulate_flows``'s; this module walks them, injects the anomalies and stamps the
events in working hours.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ingest.errors import SimulationError
from ingest.simulate_flows import (
    BACK,
    DAY,
    END,
    PROCESSES,
    RECEIVED,
    REGIONS,
    REQUEST,
    TEAMS,
    Flow,
    activities,
    flow_of,
    pick,
)
from schemas.event import CaseEvent, format_time, to_time_us

__all__ = ["PROCESSES", "Anomalies", "Bottleneck", "ReworkLoop", "Simulation", "StuckCases",
           "activities", "simulate", "write_ground_truth"]

_TZ = ZoneInfo("Europe/Amsterdam")
_DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=_TZ)  # a Monday
_OPEN, _CLOSE = (9, 0), (17, 30)  # working hours, Mon-Fri, Amsterdam wall clock
_MAX_VISITS = 2  # without injected rework, no activity occurs more often than this in a case
_SIGMA = 0.75  # spread of the log-normal waiting and work times


@dataclass(frozen=True)
class Bottleneck:
    """From `since` on (until `until`, when given), the wait before `activity` is `factor`
    times as long."""

    activity: str
    since: datetime  # naive datetimes are read as Europe/Amsterdam wall-clock time
    factor: float = 5.0
    segment: tuple[str, str] | None = None
    """(attribute, value): only cases whose attribute has that value are slowed; None: all."""
    until: datetime | None = None
    """The anomaly ends (it was fixed): a wait that starts from then on is normal again."""


@dataclass(frozen=True)
class ReworkLoop:
    """A `share` of the cases runs the sequence `activities` 1-3 extra times."""

    activities: tuple[str, ...]
    share: float = 0.1
    since: datetime | None = None
    """Only cases arriving from then on get the loop (it "appears mid-way"); None: all cases.
    Naive datetimes are read as Europe/Amsterdam wall-clock time."""
    until: datetime | None = None
    """The anomaly ends (it was fixed): cases arriving from then on get no loop."""


@dataclass(frozen=True)
class StuckCases:
    """A `share` of the cases records nothing more after `after_activity`."""

    after_activity: str
    share: float = 0.05
    until: datetime | None = None
    """The anomaly ends (it was fixed): the share is drawn from the cases arriving before
    then, and each of them goes on at `until` (its next step's wait starts then) instead of
    recording nothing more; cases arriving from then on are never stuck."""


@dataclass(frozen=True)
class Anomalies:
    """The anomalies to inject; None means none of that kind."""

    bottleneck: Bottleneck | None = None
    rework: ReworkLoop | None = None
    stuck: StuckCases | None = None


@dataclass(frozen=True)
class Simulation:
    """Simulated events (in time order) and the ground truth of what was injected."""

    process: str
    events: list[CaseEvent]
    ground_truth: dict[str, Any]


@dataclass
class _Case:
    case_id: str
    arrival: datetime
    rng: random.Random
    attributes: dict[str, Any]
    path: list[str]  # mutable: anomalies add or cut steps
    held: tuple[int, datetime] | None = None
    """(position, until): the case is stuck after that step until then (an anomaly's end)."""


def _check_activity(process: str, what: str, name: str) -> None:
    valid = activities(process)
    if name not in valid:
        raise SimulationError(f"{what} {name!r} is not an activity of {process}; "
                         f"valid activities: {', '.join(valid)}")


def _check_share(what: str, share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise SimulationError(f"{what} share {share!r} must be between 0 and 1")


def _check_until(what: str, since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and _local(until) <= _local(since):
        raise SimulationError(f"{what} until {until.isoformat()} must be after its since "
                              f"{since.isoformat()}")


def _check(process: str, anomalies: Anomalies) -> None:
    flow = flow_of(process)
    if anomalies.bottleneck is not None:
        _check_until("bottleneck", anomalies.bottleneck.since, anomalies.bottleneck.until)
    if anomalies.rework is not None:
        _check_until("rework", anomalies.rework.since, anomalies.rework.until)
    if (bottleneck := anomalies.bottleneck) is not None:
        _check_activity(process, "bottleneck activity", bottleneck.activity)
        if bottleneck.activity == next(iter(flow.steps)):
            raise SimulationError(f"bottleneck activity {bottleneck.activity!r} starts every {process}"
                             f" case, so nothing waits before it; choose one of: "
                             f"{', '.join(list(flow.steps)[1:])}")
        if not bottleneck.factor > 0:
            raise SimulationError(f"bottleneck factor {bottleneck.factor!r} must be positive")
    if (rework := anomalies.rework) is not None:
        if not rework.activities:
            raise SimulationError("rework loop needs at least one activity")
        for name in rework.activities:
            _check_activity(process, "rework activity", name)
        _check_share("rework", rework.share)
    if (stuck := anomalies.stuck) is not None:
        _check_activity(process, "stuck activity", stuck.after_activity)
        if all(t == END for t, _ in flow.steps[stuck.after_activity].next):
            going_on = [n for n, s in flow.steps.items() if any(t != END for t, _ in s.next)]
            raise SimulationError(f"stuck activity {stuck.after_activity!r} ends every {process} case; "
                             f"choose one of: {', '.join(going_on)}")
        _check_share("stuck", stuck.share)


def _local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=_TZ) if moment.tzinfo is None else moment.astimezone(_TZ)


def _opening(moment: datetime) -> datetime:
    """The first working moment at or after `moment` (Amsterdam time); closing time rolls over."""
    while True:
        if moment.weekday() < 5:
            opens = moment.replace(hour=_OPEN[0], minute=_OPEN[1], second=0, microsecond=0)
            closes = moment.replace(hour=_CLOSE[0], minute=_CLOSE[1], second=0, microsecond=0)
            if moment < opens:
                return opens
            if moment < closes:
                return moment
        moment = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _advance(moment: datetime, minutes: float) -> datetime:
    """`moment` plus `minutes` of working time (whole seconds), skipping nights and weekends."""
    left = timedelta(seconds=round(minutes * 60))
    moment = _opening(moment)
    while True:
        closes = moment.replace(hour=_CLOSE[0], minute=_CLOSE[1], second=0, microsecond=0)
        if moment + left <= closes:
            return moment + left
        left -= closes - moment
        moment = _opening(closes)


def _duration(rng: random.Random, mean: float) -> float:
    """A log-normal duration in minutes with the given mean (0 stays 0)."""
    if mean <= 0:
        return 0.0
    return rng.lognormvariate(math.log(mean) - _SIGMA * _SIGMA / 2, _SIGMA)


def _walk(flow: Flow, rng: random.Random) -> list[str]:
    """One case's activities: a weighted walk over the flow table, each activity at most twice."""
    path = [next(iter(flow.steps))]
    visits = Counter(path)
    requester = path[0]
    while True:
        here = path[-1]
        options: list[tuple[str, float]] = []
        for target, weight in flow.steps[here].next:
            target = requester if target == BACK else target
            asks = target == REQUEST and here != RECEIVED
            if target == END or (visits[target] < _MAX_VISITS
                                  and not (asks and visits[here] >= _MAX_VISITS)):
                options.append((target, weight))
        if not options:
            raise SimulationError(f"flow table dead end after {here!r} in {path}")
        chosen = rng.choices([t for t, _ in options], weights=[w for _, w in options])[0]
        if chosen == END:
            return path
        if chosen == REQUEST and here != RECEIVED:
            requester = here
        path.append(chosen)
        visits[chosen] += 1


def _runs(path: Sequence[str], loop: Sequence[str]) -> int:
    """How often `loop` occurs in `path` as consecutive, non-overlapping activities."""
    count, i, size = 0, 0, len(loop)
    while i <= len(path) - size:
        if list(path[i:i + size]) == list(loop):
            count, i = count + 1, i + size
        else:
            i += 1
    return count


def _rework_slot(flow: Flow, path: list[str], loop: list[str]) -> tuple[int, bool] | None:
    """Where to add loop runs: after the first natural run, else after a step that can lead in."""
    size = len(loop)
    for i in range(len(path) - size + 1):
        if path[i:i + size] == loop:
            return i + size, True
    for i, name in enumerate(path[:-1]):
        if any(t == loop[0] for t, _ in flow.steps[name].next):
            return i + 1, False
    return None


def _inject_rework(flow: Flow, plans: list[_Case], rework: ReworkLoop,
                   rng: random.Random) -> dict[str, Any]:
    loop = list(rework.activities)
    since = _local(rework.since) if rework.since is not None else None
    until = _local(rework.until) if rework.until is not None else None
    arriving = [c for c in plans if (since is None or c.arrival >= since)
                and (until is None or c.arrival < until)]
    slots = {c.case_id: s for c in arriving if (s := _rework_slot(flow, c.path, loop)) is not None}
    eligible = [c for c in arriving if c.case_id in slots]
    chosen = rng.sample(eligible, min(len(eligible), round(rework.share * len(arriving))))
    runs: dict[str, int] = {}
    for case in sorted(chosen, key=lambda c: c.case_id):
        at, natural = slots[case.case_id]
        extra = rng.randint(1, 3)
        case.path[at:at] = loop * (extra if natural else extra + 1)
        runs[case.case_id] = _runs(case.path, loop)
    return {"activities": loop, "share": rework.share, "cases": sorted(runs), "runs": runs,
            "natural_max_runs": _MAX_VISITS,
            "since": None if since is None else format_time(to_time_us(since)),
            "until": None if until is None else format_time(to_time_us(until))}


def _inject_stuck(plans: list[_Case], stuck: StuckCases, rng: random.Random,
                  exclude: set[str]) -> dict[str, Any]:
    name = stuck.after_activity
    until = _local(stuck.until) if stuck.until is not None else None
    arriving = [c for c in plans if until is None or c.arrival < until]
    eligible = [c for c in arriving if c.case_id not in exclude and name in c.path[:-1]]
    chosen = rng.sample(eligible, min(len(eligible), round(stuck.share * len(arriving))))
    for case in chosen:
        if until is None:
            del case.path[case.path.index(name) + 1:]
        else:
            case.held = (case.path.index(name), until)
    return {"after_activity": name, "share": stuck.share,
            "cases": sorted(c.case_id for c in chosen),
            "until": None if until is None else format_time(to_time_us(until))}


def _in_segment(case: _Case, segment: tuple[str, str] | None) -> bool:
    """True when the case has the segment's attribute value (always, without a segment)."""
    return segment is None or str(case.attributes.get(segment[0])) == segment[1]


def _timeline(flow: Flow, case: _Case, process: str, bottleneck: Bottleneck | None,
              with_start_events: bool, slowed: set[str]) -> list[CaseEvent]:
    """Time, resource and team for each step of one case; notes the cases the bottleneck hit."""
    rng, events = case.rng, list[CaseEvent]()
    since_us = to_time_us(_local(bottleneck.since)) if bottleneck else 0
    until_us = (to_time_us(_local(bottleneck.until)) if bottleneck and bottleneck.until
                else None)
    attributes = json.dumps(case.attributes, sort_keys=True, separators=(",", ":"))
    handlers: dict[str, str] = {}
    done, hold = case.arrival, 0.0
    for pos, name in enumerate(case.path):
        step = flow.steps[name]
        begin = done
        if pos > 0:
            wait = _duration(rng, step.wait) + _duration(rng, hold)
            if (bottleneck and name == bottleneck.activity and to_time_us(done) >= since_us
                    and (until_us is None or to_time_us(done) < until_us)
                    and _in_segment(case, bottleneck.segment)):
                wait *= bottleneck.factor
                slowed.add(case.case_id)
            begin = _advance(done, max(wait, 1.0))
        end = _advance(begin, max(_duration(rng, step.work), 1.0)) if step.work else begin
        if step.team not in handlers:  # one handler per team per case
            first, size = TEAMS[step.team]
            handlers[step.team] = f"u-{first + rng.randrange(size)}"
        stamps = [("start", begin)] if with_start_events and step.work else []
        for lifecycle, moment in [*stamps, ("complete", end)]:
            events.append(CaseEvent(
                event_id=f"{case.case_id}-{len(events) + 1}", process=process,
                case_id=case.case_id, activity=name, time_us=to_time_us(moment),
                lifecycle=lifecycle, resource=handlers[step.team], team=step.team,
                attributes=attributes))
        done, hold = end, step.hold
        if case.held is not None and case.held[0] == pos:
            done = max(done, case.held[1])  # stuck here until the anomaly ended
    return events


_NO_ANOMALIES = Anomalies()


def simulate(process: str, cases: int, *, seed: int = 0, start: datetime | None = None,
             anomalies: Anomalies = _NO_ANOMALIES, with_start_events: bool = False) -> Simulation:
    """Simulate `cases` cases of `process`, arriving over working days from `start`.

    The same arguments give the same events. Each case's path and times come from its own
    random stream, so cases the anomalies do not touch are identical to a run without them.
    A naive `start` (or bottleneck `since`) is read as Europe/Amsterdam wall-clock time.
    """
    flow = flow_of(process)
    _check(process, anomalies)
    if cases < 0:
        raise SimulationError(f"cases {cases!r} must be zero or more")
    first = _opening(_local(start or _DEFAULT_START))
    master = random.Random(seed)
    plans: list[_Case] = []
    arrival = first
    for index in range(cases):
        if index:
            arrival = _advance(arrival, master.expovariate(flow.per_day / DAY))
        rng = random.Random(master.getrandbits(64))
        attributes = flow.attributes(rng)  # drawn before the walk, always in this order
        if (regions := REGIONS.get(process)) is not None:
            attributes["region"] = pick(random.Random(f"{seed}/{index}/region"), regions)
        plans.append(_Case(f"{flow.prefix}-{index + 1:06d}", arrival, rng, attributes,
                           _walk(flow, rng)))
    picker = random.Random(master.getrandbits(64))
    truth: dict[str, Any] = {}
    if anomalies.rework is not None:
        truth["rework"] = _inject_rework(flow, plans, anomalies.rework, picker)
    if anomalies.stuck is not None:
        reworked = set(truth.get("rework", {}).get("cases", []))
        truth["stuck"] = _inject_stuck(plans, anomalies.stuck, picker, reworked)
    slowed: set[str] = set()
    events = [e for case in plans for e in _timeline(
        flow, case, process, anomalies.bottleneck, with_start_events, slowed)]
    events.sort(key=lambda e: (e.time_us, e.case_id))  # stable: a case keeps its own order
    if (bottleneck := anomalies.bottleneck) is not None:
        truth["bottleneck"] = {
            "activity": bottleneck.activity, "factor": bottleneck.factor,
            "since": format_time(to_time_us(_local(bottleneck.since))),
            "until": (None if bottleneck.until is None
                      else format_time(to_time_us(_local(bottleneck.until)))),
            "segment": None if bottleneck.segment is None else list(bottleneck.segment),
            "cases": sorted(slowed)}
    ground_truth = {
        "process": process, "seed": seed, "cases": cases, "events": len(events),
        "start": format_time(to_time_us(first)), "timezone": str(_TZ),
        "working_hours": "Mon-Fri 09:00-17:30", "with_start_events": with_start_events,
        "activities": list(flow.steps),
        "end_activities": [n for n, s in flow.steps.items() if any(t == END for t, _ in s.next)],
        "natural_max_visits": _MAX_VISITS, "anomalies": truth,
    }
    return Simulation(process=process, events=events, ground_truth=ground_truth)


def write_ground_truth(simulations: Sequence[Simulation], path: str | Path) -> None:
    """Write the simulations' ground truth as JSON: {"simulations": [ground_truth, ...]}."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = {"simulations": [s.ground_truth for s in simulations]}
    target.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
