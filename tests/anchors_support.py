"""What the frozen-baseline tests share: rounds of rules and lifecycle along a simulated period
with the state kept, as ``alerts run`` would evaluate it, and the alerts of each round."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import polars as pl

from alerts.anchors import anchors_of
from alerts.context import BaselineAnchor
from alerts.ends import learned_ends
from alerts.evaluate import run_rules
from alerts.lifecycle import LifecyclePolicy, advance
from alerts.registry import ProcessDefinition
from mining.frame import prepare
from schemas.alerts import Acceptance, Alert, AlertChange, Status

POLICY = LifecyclePolicy()


@dataclass
class Along:
    """The state of one process evaluated round by round (``stateless``: no anchors, as the
    rules were before baselines were frozen)."""

    definition: ProcessDefinition
    frame: pl.DataFrame
    stateless: bool = False
    alerts: dict[str, Alert] = field(default_factory=dict)
    changes: list[AlertChange] = field(default_factory=list)
    acceptances: dict[str, Acceptance] = field(default_factory=dict)

    def round(self, now: datetime) -> dict[str, Alert]:
        """Evaluate every rule at ``now`` on the events up to it and advance the lifecycle."""
        events = prepare(self.frame.filter(pl.col("timestamp") <= now.astimezone(UTC)))
        definition = self.definition
        if not definition.end_activities:
            definition = ProcessDefinition(definition.name, calendar=definition.calendar,
                                           reference_model=definition.reference_model,
                                           rules=definition.rules,
                                           end_activities=learned_ends(events, now))
        anchors = {} if self.stateless else anchors_of(self.alerts.values(), self.acceptances)
        found = run_rules(definition, events, now, anchors=anchors)
        result = advance(self.alerts, found, now=now, policy=POLICY, owners={},
                         evaluated={definition.name}, acceptances=self.acceptances)
        self.alerts = {a.key: a for a in result.alerts}
        self.changes.extend(result.changes)
        return self.alerts

    def accept(self, key: str, at: datetime) -> None:
        self.acceptances[key] = Acceptance(key, "owner", at, "the new level is expected")

    def open_keys(self, rule: str) -> set[str]:
        return {k for k, a in self.alerts.items() if a.rule == rule and a.status is not Status.RESOLVED}


def along(frame: pl.DataFrame, process: str, times: Sequence[datetime], *,
          stateless: bool = False, definition: ProcessDefinition | None = None,
          accept: Mapping[datetime, str] | None = None) -> tuple[Along, list[dict[str, Alert]]]:
    """Every round at ``times``; ``accept``: at a round's time, accept that key first."""
    state = Along(definition or ProcessDefinition(process), frame, stateless)
    seen = []
    for now in times:
        if accept and now in accept:
            state.accept(accept[now], now)
        seen.append(dict(state.round(now)))
    return state, seen


def open_alert_anchors(frame: pl.DataFrame, process: str, now: datetime, first_day: date,
                       definition: ProcessDefinition | None = None) -> dict[str, BaselineAnchor]:
    """Anchors as a process with many open alerts holds them, each key on a day of its own from
    ``first_day`` on: every wait before an activity (and its segments of region), every hand-off
    and the case duration found at ``now``, every activity's rework and every loop of the recent
    cases; one key in four accepted (the level since ``first_day``)."""
    definition = definition or ProcessDefinition(process)
    events = prepare(frame.filter(pl.col("timestamp") <= now.astimezone(UTC)))
    activities = sorted(events.df["activity"].unique())
    subjects = [f"bottleneck/{process}/wait before {a}" for a in activities]
    subjects += [f"bottleneck/{process}/wait before {a}/region={r}" for a in activities[:3]
                 for r in ("east", "north")]
    subjects += [f"rework/{process}/rework at {a}" for a in activities]
    found = run_rules(definition, events, now)
    subjects += [f.key for f in found if f.rule in ("throughput", "handoff", "rework")]
    anchors = {}
    for i, key in enumerate(dict.fromkeys(subjects)):
        day = first_day + timedelta(days=i)
        anchors[key] = BaselineAnchor(until=day, start=first_day) if i % 4 == 3 else \
            BaselineAnchor(until=day)
    return anchors
