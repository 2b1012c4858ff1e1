"""Conformance rule: recent cases no longer fit the documented reference model.

When the process names a ``reference_model`` (BPMN or PNML), the cases started in the recent
window (``recent``, default 30 days; at least ``min_cases`` of them) are replayed on it with
token-based replay (``mining.model.check_conformance``, equal to pm4py). A log fitness, or a
share of cases that replay without a single deviation, below ``min_fitness`` is a finding naming
the main deviations in sentences (activities the model does not know, steps out of order, steps
left undone): the documented procedure no longer describes the work. The share of fitting cases
is checked too because token replay forgives a lot: receipt's cases with every trace reversed
still replay with fitness 0.97 on receipt.bpmn, while only 8 % of them fit. A model that cannot
be read is a warning finding saying so, never a crash. A finding has no ``since``: the window
it judges (named in the summary) moves with every round, and when the deviation began is not
known; a "since" at the window's start would move every week.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import polars as pl
import structlog

from alerts.anchors import anchored
from alerts.context import BaselineAnchor, Rule, RuleContext, Scope
from alerts.duration import parse_duration
from alerts.rules.rework_shift import window_start
from alerts.thresholds import Conformance
from mining.errors import MiningError
from mining.frame import Events
from mining.model import check_conformance, load_reference_model
from schemas.alerts import Finding, Severity

SUBJECT: Final = "conformance to reference model"
TOP: Final = 5  # deviations named
ACCEPTED_MARGIN: Final = 0.05
"""How much worse than an accepted level recent cases must fit to be a finding again."""

log = structlog.stdlib.get_logger("backlight.alerts.rules.conformance")


def _unreadable(ctx: RuleContext, error: Exception) -> Finding:
    model = Path(str(ctx.process.reference_model)).name
    log.warning("reference model unreadable", process=ctx.process.name, model=model,
                error=str(error))
    return Finding(
        rule=CONFORMANCE.name, process=ctx.process.name, subject=SUBJECT, severity=Severity.WARNING,
        summary=f"the reference model {model} of {ctx.process.name} cannot be read: {error}",
        evidence={"model": str(ctx.process.reference_model), "error": str(error)})


def _accepted_level(ctx: RuleContext, df: pl.DataFrame, firsts: pl.DataFrame,
                    anchor: BaselineAnchor, model: str) -> float | None:
    """The lower of fitness and fitting share of the cases started in the accepted span."""
    assert anchor.start is not None
    zone = ZoneInfo(ctx.process.calendar.timezone)
    lo, hi = (datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
              for day in (anchor.start, anchor.until))
    ids = firsts.filter((pl.col("start") >= lo) & (pl.col("start") < hi))["case_id"]
    if ids.len() == 0:
        return None
    result = check_conformance(Events(df.filter(pl.col("case_id").is_in(ids.implode())),
                                      ctx.events.lifecycle), model)
    return min(float(result.fitness["log_fitness"]), result.fitting_share)


def _conformance(ctx: RuleContext, anchor: BaselineAnchor | None,
                 _scope: Scope) -> list[Finding]:
    """A finding when recent cases fit the reference model worse than ``min_fitness`` (or an
    accepted level)."""
    model = ctx.process.reference_model
    if not model:
        return []
    s = ctx.process.rules.conformance
    try:
        load_reference_model(model)
    except (MiningError, OSError) as exc:
        return [_unreadable(ctx, exc)]
    start = window_start(ctx.process.calendar, ctx.now, parse_duration(s.recent))
    df = ctx.events.df.filter(pl.col("timestamp") <= ctx.now.astimezone(UTC))
    firsts = df.group_by("case_id").agg(pl.col("timestamp").min().alias("start"))
    recent = firsts.filter(pl.col("start") >= start.astimezone(UTC))["case_id"]
    if recent.len() < s.min_cases:
        return []
    events = Events(df.filter(pl.col("case_id").is_in(recent.implode())), ctx.events.lifecycle)
    try:
        result = check_conformance(events, model)
    except MiningError as exc:
        return [_unreadable(ctx, exc)]
    fitness = float(result.fitness["log_fitness"])
    floor = s.min_fitness
    if anchor is not None and anchor.accepted:
        try:
            level = _accepted_level(ctx, df, firsts, anchor, model)
        except MiningError as exc:
            return [_unreadable(ctx, exc)]
        if level is not None:
            floor = min(floor, level - ACCEPTED_MARGIN)
    if min(fitness, result.fitting_share) >= floor:
        return []
    lines = result.findings(TOP)
    main = lines[1] if len(lines) > 1 else ""
    return [Finding(
        rule=CONFORMANCE.name, process=ctx.process.name, subject=SUBJECT, severity=s.severity,
        summary=(f"{result.fitting_share:.0%} of {ctx.process.name} cases started since "
                 f"{start.date()} follow the documented model {Path(model).name} (replay "
                 f"fitness {fitness:.2f}, threshold {s.min_fitness:g}). {main}").rstrip(),
        evidence={"model": model, "fitness": fitness, "min_fitness": s.min_fitness,
                  "cases": result.cases, "fitting_cases": result.fitting_cases,
                  "fitting_share": result.fitting_share, "deviations": lines,
                  "window": {"from": start.isoformat(), "to": ctx.now.isoformat(),
                             "length": s.recent}})]  # no since: when it began is not known


conformance = anchored("conformance", _conformance, frozen=False)
"""Conformance findings, an accepted key against its accepted level; a fixed threshold has no
baseline to freeze, so an open episode costs no second replay."""

CONFORMANCE: Final = Rule(name="conformance", settings=Conformance, run=conformance, baseline=True)
