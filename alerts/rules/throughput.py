"""throughput: whole cases take longer than they used to (throughput-time degradation).

Finding it. One series: the business duration (first to last event) of every case that
finished, dated by the day it finished, through the same drift method as ``bottleneck``
(``alerts.changepoint``: CUSUM onset, frozen robust baseline, Mann-Whitney at 1%, practical-size
guard on the median and the p90; false-alarm reasoning there). Only finished cases count (their
last activity is an end activity of the process), so open work never shortens the figures.
Cases that finished before the data had run for the series' p95 duration are left out of the
baseline (only short cases can have finished by then). With ``Throughput.segments`` configured,
a degradation confined to one segment is found the way ``bottleneck`` finds it.

Dating it ("since"). Dated by completion, a slowdown shows late: a case slowed at one step
finishes only after the longer wait *and* the rest of its process, so the completion-dated
CUSUM starts days after the change (2-7 business days on the simulator's ten-fold Risk review
slowdown) and the first completions after it mix old and new work. So once a drift is found
(completion-dated onset ``o``), the same cases are dated again, each by the day it *entered the
wait where it lost the most time*: of its completed waits, the one with the largest excess over
that transition's usual wait (the median of its waits that ended before ``o``; a transition
never seen before counts in full). That is when the extra time began to accrue, so a slowed
case lands on or after the change and an unaffected one anywhere in its life. The CUSUM of
``alerts.changepoint`` runs on that series cut at ``o`` (``onset_up_to``): a case enters its
slow wait before it finishes, so the change in entry dates is at or before ``o``, and days after
``o`` are not needed; they would be right-censored anyway (cases that entered lately and are
still open are the slow ones). The onset of the backed run in progress on ``o`` becomes "since"
when it lies before ``o`` and no more than the recent p90 duration before it (a case finishing
at ``o`` cannot have entered its wait earlier than that), and the baseline and recent windows
still bear the drift out with it (``confirm``); otherwise ``o`` stays. Re-dating only moves the
date of a drift already found: it never makes or removes a finding, so the false-alarm
reasoning is unchanged. Dating by case start instead would land early (cases started a day or
two before the change reach the slowed step after it); on the simulator (twenty seeds) the
entry dating lands within one business day of the injected onset.

Anchored baselines (``alerts.anchors``) as ``bottleneck`` honours them (``Window``): an open
episode's key is judged against the finished cases' durations before its onset day, an accepted
one against those from its onset up to the acceptance; the drift is then not re-dated.

The figures keep their meaning: windows are still by completion. "They took" is the p10-p90 of
the cases that finished in the baseline window before "since"; "now take" that of the cases that
finished in the recent window (from "since", or the rule's ``recent`` span when that is later).
The summary speaks the way the back office does: "claims cases now take 7-15 business days
(p10-p90), they took 1-3 until 2026-09-14".
"""

from __future__ import annotations

import math
from datetime import date
from typing import Final

import numpy as np
import polars as pl

from alerts.anchors import anchored
from alerts.changepoint import confirm, in_scope, onset_up_to
from alerts.context import BaselineAnchor, Rule, RuleContext, Scope
from alerts.facts import Facts
from alerts.rules.waits import (
    Hit,
    Window,
    days_text,
    evidence,
    expired,
    segment_hits,
    segment_text,
    series_hit,
    severity,
    span_text,
)
from alerts.thresholds import Throughput
from schemas.alerts import Finding

SUBJECT = "case duration"


def _throughput(ctx: RuleContext, anchor: BaselineAnchor | None, scope: Scope) -> list[Finding]:
    """A finding when finished cases now take clearly longer than in the baseline (segments
    only when ``scope`` judges one)."""
    rule = ctx.process.rules.throughput
    if not rule.enabled:
        return []
    finished = ctx.facts.cases.filter(pl.col("closed"))
    if finished.is_empty():
        return []
    window = Window.of(ctx, rule, anchor)
    rows = window.lookback(finished, "last_day")
    hit = series_hit(rows, window, "duration_s", "last_day")
    whole = [] if hit is None else [_finding(ctx, rule, window, _redated(ctx, window, hit), {}, [])]
    if (hit is not None and hit.drift.opens) or not scope.segmented(SUBJECT):
        return whole  # only holding an open alert: a segment may open one
    keys = tuple(k for k in rule.segments if k in ctx.facts.segment_keys)
    hits, others = segment_hits(rows, rule, window, keys, "duration_s", "last_day")
    return whole + [_finding(ctx, rule, window, _redated(ctx, window, h), {k: v}, others)
                    for k, v, h in hits]


def entered(facts: Facts, cases: pl.DataFrame, before: date) -> pl.Series:
    """For each of ``cases`` (in order), the local day it entered the wait where it lost the
    most time: its completed wait with the largest excess over that transition's usual wait
    (the median of those that ended before ``before``; a transition unseen before counts in
    full). A case without a wait is dated by its last event."""
    waits = facts.waits.join(cases.select("case_id"), on="case_id", how="semi")
    usual = (waits.filter(pl.col("ended_day") < before)
             .group_by("source", "target").agg(pl.col("wait_s").median().alias("usual")))
    excess = pl.col("wait_s") - pl.col("usual").fill_null(0.0)
    worst = (waits.join(usual, on=["source", "target"], how="left")
             .group_by("case_id").agg(pl.col("started_day").sort_by(excess).last().alias("day")))
    return (cases.join(worst, on="case_id", how="left", maintain_order="left")
            .select(pl.col("day").fill_null(pl.col("last_day")))["day"])


def _redated(ctx: RuleContext, window: Window, hit: Hit) -> Hit:
    """The drift dated from the day its slow cases entered their slow wait (see the module
    docstring); the hit as found when that series shows no earlier backed run, or when the
    key's baseline is anchored (its day is the onset)."""
    if window.anchor is not None:
        return hit
    settings, found = window.settings, hit.drift.onset
    rows = hit.rows
    days = rows["last_day"].to_numpy().astype("datetime64[D]")
    values = rows["duration_s"].to_numpy().astype(np.float64) / window.day_seconds
    elapsed = rows["elapsed_s"].to_numpy().astype(np.float64) / window.day_seconds
    index = in_scope(days, values, settings, elapsed)
    entry = entered(ctx.facts, rows, found).to_numpy().astype("datetime64[D]")
    onset = onset_up_to(entry[index], values[index], settings, found)
    earliest = ctx.process.calendar.add_business_days(found, -math.ceil(hit.drift.recent.p90))
    if onset is None or not earliest <= onset < found:
        return hit
    drift = confirm(days, values, settings, onset, index)
    if drift is None or (hit.drift.opens and not drift.opens):  # never loses its opening
        return hit
    return Hit(drift, rows, hit.day_seconds)


def _range(low: float, high: float, window: Window) -> str:
    """``3.1-9.4 business days``, or each end in its own unit below a day."""
    if low >= 1:
        return f"{days_text(low)}-{days_text(high)} business days"
    return f"{span_text(low, window.day_seconds)} to {span_text(high, window.day_seconds)}"


def _finding(ctx: RuleContext, rule: Throughput, window: Window, hit: Hit,
             segment: dict[str, str], others: list[str]) -> Finding:
    drift = hit.drift
    now, then = drift.recent, drift.baseline
    summary = (f"{ctx.process.name} cases{segment_text(segment)} now take "
               f"{_range(now.p10, now.p90, window)} (p10-p90), they took "
               f"{_range(then.p10, then.p90, window)} until {drift.onset.isoformat()}")
    facts = evidence(hit, window)
    facts["recent"]["p10_days"] = round(now.p10, 2)
    facts["baseline"]["p10_days"] = round(then.p10, 2)
    if others:
        facts["also_drifted"] = others
    return Finding(rule=THROUGHPUT.name, process=ctx.process.name, subject=SUBJECT,
                   severity=severity(rule, drift, window), summary=summary, evidence=facts,
                   segment=segment, since=drift.onset, cases=hit.slow_cases("duration_s"),
                   opens=drift.opens)


throughput = anchored("throughput", _throughput,
                      lambda ctx, _key, anchor: expired(ctx, ctx.process.rules.throughput, anchor))
"""Throughput findings, each key against its anchor (``alerts.rules.waits``)."""

THROUGHPUT: Final = Rule(name="throughput", settings=Throughput, run=throughput, baseline=True)
