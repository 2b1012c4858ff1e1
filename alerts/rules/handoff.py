"""handoff: the wait when work passes from one team to another grew against baseline.

One series per pair of teams (``source_team -> target_team``, both known and different): the
waits of every completed transition where the team changes, in business days, dated by the day
the receiving team's step happened, through the same drift method as ``bottleneck``
(``alerts.changepoint``; false-alarm reasoning there). The subject names the hand-off,
"front-office/branch -> back-office/kyc"; the evidence names the activities it covers.

Anchored baselines (``alerts.anchors``) as ``bottleneck`` honours them (``Window``): an open
episode's hand-off (or segment) is judged against its waits before the onset day, an accepted
one against those from its onset up to the acceptance.

A slowdown at one activity whose only way in is a hand-off shows up here too: the bottleneck
finding says where the work waits, this one which hand-over got slower, and they are keyed
apart (rule and subject differ) so each has one alert.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from alerts.anchors import anchored
from alerts.context import BaselineAnchor, Rule, RuleContext, Scope
from alerts.rules.waits import (
    Hit,
    Window,
    change_text,
    evidence,
    expired,
    segment_hits,
    series_hit,
    severity,
)
from alerts.thresholds import Handoff
from schemas.alerts import Finding

MAX_EDGES = 10
"""Transitions named in the evidence, the most frequent first."""


def _handoff(ctx: RuleContext, anchor: BaselineAnchor | None, scope: Scope) -> list[Finding]:
    """Findings for each hand-off between two teams whose wait drifted up (only the hand-offs
    ``scope`` judges)."""
    rule = ctx.process.rules.handoff
    if not rule.enabled:
        return []
    waits = ctx.facts.waits.filter(
        pl.col("source_team").is_not_null() & pl.col("target_team").is_not_null()
        & (pl.col("source_team") != pl.col("target_team")))
    if waits.is_empty():
        return []
    window = Window.of(ctx, rule, anchor)
    lookback = window.lookback(waits, "ended_day")
    keys = tuple(k for k in rule.segments if k in ctx.facts.segment_keys)
    findings: list[Finding] = []
    pairs = lookback.select("source_team", "target_team").unique().sort(["source_team", "target_team"])
    for source, target in pairs.iter_rows():
        subject = f"{source} -> {target}"
        if not scope.subject(subject):
            continue
        rows = lookback.filter((pl.col("source_team") == source) & (pl.col("target_team") == target))
        hit = series_hit(rows, window, "wait_s", "ended_day")
        if hit is not None:
            findings.append(_finding(ctx, rule, window, subject, hit, {}, []))
            if hit.drift.opens:  # only holding an open alert: a segment may still open one
                continue
        if not scope.segmented(subject):
            continue
        hits, others = segment_hits(rows, rule, window, keys, "wait_s", "ended_day")
        findings.extend(_finding(ctx, rule, window, subject, h, {k: v}, others)
                        for k, v, h in hits)
    return findings


def _finding(ctx: RuleContext, rule: Handoff, window: Window, subject: str, hit: Hit,
             segment: dict[str, str], others: list[str]) -> Finding:
    drift = hit.drift
    summary = f"Hand-off {subject}: {change_text(drift, window.day_seconds, segment)}"
    facts = evidence(hit, window)
    recent = hit.rows[hit.drift.recent_index.tolist()]
    edges = recent.group_by("source", "target").len().sort(["len", "source", "target"],
                                                           descending=[True, False, False])
    facts["transitions"] = [{"source": s, "target": t, "count": n}
                            for s, t, n in edges.head(MAX_EDGES).iter_rows()]
    if others:
        facts["also_drifted"] = others
    return Finding(rule=HANDOFF.name, process=ctx.process.name, subject=subject,
                   severity=severity(rule, drift, window), summary=summary, evidence=facts,
                   segment=segment, since=drift.onset, cases=hit.slow_cases("wait_s"),
                   opens=drift.opens)


handoff = anchored("handoff", _handoff,
                   lambda ctx, _key, anchor: expired(ctx, ctx.process.rules.handoff, anchor))
"""Hand-off findings, each key against its anchor (``alerts.rules.waits``)."""

HANDOFF: Final = Rule(name="handoff", settings=Handoff, run=handoff, baseline=True)
