"""No-events rule: a process whose events stopped arriving (the source of inhibition).

Fires when the business time (``ctx.process.calendar``) from the process's last event to now is
at least ``quiet_for`` and at least ``gap_factor`` x the usual long gap between consecutive
events (the p99 of the business gaps over the last ``HISTORY`` events). Counting in business
time keeps nights, weekends and holidays from looking like an outage; the p99 and the factor
keep a naturally sparse process (a few cases a week) from firing on its ordinary lulls. While
it fires, the lifecycle suppresses the process's data-driven alerts (one "no events since ..."
instead of a storm of derived ones). A process with fewer than ``MIN_EVENTS`` events has no
usual gap to speak of and is not judged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from alerts.calendar import to_us
from alerts.context import Rule, RuleContext
from alerts.duration import parse_duration
from alerts.thresholds import NoEvents
from schemas.alerts import Finding

HISTORY: Final = 20_000  # the most recent events whose gaps make "usual"
MIN_EVENTS: Final = 10


def _say(seconds: float, day_seconds: float) -> str:
    """A business-time gap in the unit people use: minutes, hours or business days."""
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    if seconds < day_seconds:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / day_seconds:.1f} business days"


def no_events(ctx: RuleContext) -> list[Finding]:
    """A critical finding when the process has been quiet far longer than usual."""
    s, calendar = ctx.process.rules.no_events, ctx.process.calendar
    stamps = (ctx.events.df.filter(pl.col("timestamp") <= ctx.now.astimezone(UTC))
              .select(pl.col("timestamp").dt.epoch("us")).to_series().sort())
    if stamps.len() < MIN_EVENTS:
        return []
    recent = stamps.tail(HISTORY + 1).to_numpy().astype(np.int64)
    gaps = calendar.business_seconds(recent[:-1], recent[1:])
    usual = float(np.quantile(gaps, 0.99))
    last_us = int(recent[-1])
    quiet = float(calendar.business_seconds(np.array([last_us]), np.array([to_us(ctx.now)]))[0])
    limit = max(calendar.seconds(parse_duration(s.quiet_for)), s.gap_factor * usual)
    if quiet < limit:
        return []
    last = datetime.fromtimestamp(last_us / 1e6, tz=UTC).astimezone(ZoneInfo(calendar.timezone))
    return [Finding(
        rule=NO_EVENTS.name, process=ctx.process.name, subject="no events", severity=s.severity,
        summary=(f"no {ctx.process.name} events since {last:%Y-%m-%d %H:%M} (usually a gap of "
                 f"at most {_say(usual, calendar.day_seconds)})"),
        evidence={"last_event": last.isoformat(),
                  "quiet_business_days": round(calendar.business_days(quiet), 2),
                  "usual_gap_minutes": round(usual / 60, 1),
                  "limit_business_days": round(calendar.business_days(limit), 2),
                  "quiet_for": s.quiet_for, "gap_factor": s.gap_factor,
                  "events_considered": int(recent.size)},
        since=calendar.business_day_of(last))]


NO_EVENTS: Final = Rule(name="no_events", settings=NoEvents, run=no_events, inhibits=True,
                        inhibitable=False)
"""Its findings freeze the process's data-driven alerts: with the feed stopped, neither the
presence nor the absence of a derived finding is evidence."""
