"""throughput: whole cases take longer than they used to (throughput-time degradation).

One series: the business duration (first to last event) of every case that finished, dated by
the day it finished, through the same drift method as ``bottleneck`` (``alerts.changepoint``:
CUSUM onset, frozen robust baseline, Mann-Whitney at 1%, practical-size guard on the median and
the p90). Only finished cases count (their last activity is an end activity of the process), so
open work never shortens the figures. Cases that finished before the data had run for the
series' p95 duration are left out of the baseline (only short cases can have finished by then).
With ``Throughput.segments`` configured, a degradation confined to one segment is found the way
``bottleneck`` finds it.

The summary speaks the way the back office does: "claims cases now take 7-15 business days
(p10-p90), they took 1-3 until 2026-09-14".
"""

from __future__ import annotations

import polars as pl

from alerts.context import RuleContext
from alerts.rules.waits import (
    Hit,
    Window,
    days_text,
    evidence,
    segment_hits,
    segment_text,
    series_hit,
    severity,
)
from alerts.thresholds import Throughput
from schemas.alerts import Finding

SUBJECT = "case duration"


def throughput(ctx: RuleContext) -> list[Finding]:
    """A finding when finished cases now take clearly longer than in the baseline."""
    rule = ctx.process.rules.throughput
    if not rule.enabled:
        return []
    finished = ctx.facts.cases.filter(pl.col("closed"))
    if finished.is_empty():
        return []
    window = Window.of(ctx, rule)
    rows = window.lookback(finished, "last_day")
    hit = series_hit(rows, window, "duration_s", "last_day")
    if hit is not None:
        return [_finding(ctx, rule, window, hit, {}, [])]
    keys = tuple(k for k in rule.segments if k in ctx.facts.segment_keys)
    hits, others = segment_hits(rows, rule, window, keys, "duration_s", "last_day")
    return [_finding(ctx, rule, window, h, {k: v}, others) for k, v, h in hits]


def _finding(ctx: RuleContext, rule: Throughput, window: Window, hit: Hit,
             segment: dict[str, str], others: list[str]) -> Finding:
    drift = hit.drift
    now, then = drift.recent, drift.baseline
    summary = (f"{ctx.process.name} cases{segment_text(segment)} now take "
               f"{days_text(now.p10)}-{days_text(now.p90)} business days (p10-p90), they took "
               f"{days_text(then.p10)}-{days_text(then.p90)} until {drift.onset.isoformat()}")
    facts = evidence(hit, window)
    facts["recent"]["p10_days"] = round(now.p10, 2)
    facts["baseline"]["p10_days"] = round(then.p10, 2)
    if others:
        facts["also_drifted"] = others
    return Finding(rule="throughput", process=ctx.process.name, subject=SUBJECT,
                   severity=severity(rule, drift), summary=summary, evidence=facts,
                   segment=segment, since=drift.onset, cases=hit.slow_cases("duration_s"))
