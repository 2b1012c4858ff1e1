"""How far back an alert round reads a process's history: what its rules look at, no more.

Every data rule looks at a bounded window before "now": the drift rules (bottleneck,
throughput, hand-off) at their baseline plus the 180 days a drift may be old
(``alerts.changepoint.HORIZON_DAYS``), the rework rules at the cases started in their recent
and baseline windows, conformance at its recent cases. The stuck rule judges every open case
against the normal waits of its step, and no_events the gaps between the latest events: both
read what there is, so the round keeps ``history`` (default a year) before the process's latest
event too, which also keeps a process that went quiet judged on its last year.

A round then reads the cases with an event since `history_start` (all their events, earlier
ones too: ``EventStore.events(..., cases_since=...)``), so its cost follows the last year of
work, not the years stored. A case idle longer than that is not listed as stuck: its work was
left long ago, and the stuck rule's "normal waits" never covered it.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from alerts.changepoint import HORIZON_DAYS
from alerts.duration import parse_duration
from alerts.registry import ProcessDefinition
from alerts.rules.rework_shift import window_start
from alerts.rules.waits import days_before


def rules_reach(definition: ProcessDefinition, now: datetime) -> datetime:
    """The earliest moment any enabled rule of ``definition`` looks at when evaluated at
    ``now`` (``now`` itself when none looks back)."""
    calendar, rules = definition.calendar, definition.rules
    today = calendar.business_day_of(now)
    starts = [now]
    for drift in (rules.bottleneck, rules.throughput, rules.handoff):
        if drift.enabled:
            days = days_before(calendar, today, parse_duration(drift.baseline)) + HORIZON_DAYS
            first = today - timedelta(days=days)
            starts.append(datetime.combine(first, time(0), tzinfo=ZoneInfo(calendar.timezone)))
    if rules.rework.enabled:
        recent = window_start(calendar, now, parse_duration(rules.rework.recent))
        starts.append(window_start(calendar, recent, parse_duration(rules.rework.baseline)))
    if rules.conformance.enabled:
        starts.append(window_start(calendar, now, parse_duration(rules.conformance.recent)))
    return min(starts)


def history_start(definition: ProcessDefinition, now: datetime, latest: datetime | None,
                  history: timedelta) -> datetime:
    """Where a round at ``now`` starts reading: ``history`` before the process's latest event
    (``latest``; ``now`` when it has none), or earlier where a rule's window reaches."""
    anchor = now if latest is None else min(latest, now)
    return min(anchor - history, rules_reach(definition, now))
