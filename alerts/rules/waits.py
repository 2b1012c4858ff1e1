"""bottleneck: the wait before an activity drifted up against the process's own baseline.

One series per target activity X: every completed transition into X (over all its incoming
edges), its wait in business days, dated by the day X happened. The series goes through
``alerts.changepoint.detect`` (CUSUM onset, frozen robust baseline, Mann-Whitney at 1% and the
practical-size guard of ``WaitDrift``: by default twice as long *and* one business day longer,
on the median and on the p90, with ``min_cases`` completed waits in each window). Its
false-alarm reasoning is in that module's docstring.

Segments. When the process-wide wait before X has not drifted, the same test runs per value of
each configured segment attribute (``WaitDrift.segments``: region, channel, product; a key with
more than ``max_segment_values`` values is skipped as not a segment). A slowdown confined to one
segment is then found even though the process-wide median barely moves. A segment's drift
counts only if it is confined to it: the other cases' median over the same windows must have
grown by less than the square root of the segment's ratio (half of it on the log scale), else
it is a process-wide drift not yet confirmed as such, and naming one segment would be wrong.
Never two findings for one thing: when the process-wide series fires no segment is reported
for X; otherwise only the attribute whose drifted value is strongest is reported (each of its
drifted values, which are disjoint sets of cases), and drifts seen through the other attributes,
which are largely the same cases, are named in the evidence (``also_drifted``).

Work still waiting. Completed waits show a slowdown only once the slow work comes through; the
open cases ageing before X show it earlier. Open cases whose current step usually leads to X
(at least half of that step's completed transitions in the lookback went to X) are the work
waiting for X: ``waiting_now.cases``; those idle longer than the baseline p90 of the wait before
X are ``waiting_now.overdue``; the longest idle time is ``waiting_now.oldest_days``. They also
make an *early* finding: when the completed waits have a current, backed CUSUM run (onset o)
but not yet the practical size, the recent sample becomes every wait that *began* on or after
o: the completed ones, plus the open cases that began waiting on or after o, counted at their
idle time so far. That sample is right-censored (a wait still running counts for less than it
will be), so it can only understate the new level: on a healthy process it is, if anything,
shorter than the baseline, and the same test and practical-size guard must hold
(``recent.still_waiting`` says how many open cases it holds). A step that also leads elsewhere
contributes those cases too; it has to lead to X at least half the time.

Anchored baselines (``alerts.anchors``). A key with an open episode is judged against its
onset day instead of the CUSUM's current run: baseline, the samples of the ``baseline`` before
that day; recent, those from that day (or the recent window's start, if later) to today; the
same test and practical-size guard decide whether it is still present, so it holds until the
wait is back within the baseline it had before the episode, however long ago that began (the
lookback reaches back to it). A key accepted as normal is judged the same way against the
samples from its episode's onset up to the acceptance day (it finds again only a further rise
of the practical size over the accepted level), until the CUSUM's lookback starts after the
acceptance. Waits, segments (a segment key's series, without the confinement check: the key's
own figure decides), throughput and hand-offs all go through ``Window`` and ``Series``.

The helpers here (``Window``, ``Hit``, ``series_hit``, ``segment_hits``, ``figures``) are the
drift method the ``throughput`` and ``handoff`` rules share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from alerts.anchors import anchored
from alerts.calendar import WorkCalendar
from alerts.changepoint import (
    HORIZON_DAYS,
    Days,
    Drift,
    DriftSettings,
    Sample,
    Values,
    baseline_of,
    compare,
    confirm,
    current_onset,
    in_scope,
)
from alerts.context import BaselineAnchor, Rule, RuleContext, Scope
from alerts.duration import Duration, parse_duration
from alerts.errors import DateRangeError
from alerts.facts import segment_column
from alerts.thresholds import WaitDrift
from schemas.alerts import Finding, Severity

MAX_CASES = 50
"""Case ids listed in a finding, the slowest first."""
NEAR_ZERO_DAYS: Final = 0.05
"""A baseline median below this (about 25 business minutes on an 8.5-hour day) is near zero:
the change is said in absolute terms (how much longer), never as a ratio, which would only
measure how small the baseline was."""


def days_before(calendar: WorkCalendar, today: date, span: Duration) -> int:
    """How many calendar days back from ``today`` a window of ``span`` reaches."""
    if span.business:
        per_day = 1.0 if span.unit == "business_days" else 3600.0 / calendar.day_seconds
        n = max(1, math.ceil(span.amount * per_day))
        n -= 1 if calendar.is_business_day(today) else 0
        return (today - calendar.add_business_days(today, -n)).days
    return max(1, math.ceil(span.wall_seconds / 86_400))


@dataclass(frozen=True)
class Window:
    """The drift settings of one rule at one moment, in the process's business time."""

    settings: DriftSettings
    day_seconds: float
    anchor: BaselineAnchor | None = None
    """The key's pinned baseline (``alerts.anchors``): its day is the onset, not the CUSUM's."""

    @classmethod
    def of(cls, ctx: RuleContext, rule: WaitDrift,
           anchor: BaselineAnchor | None = None) -> Window:
        """The recent and baseline windows of ``rule`` ending at ``ctx.now`` (against
        ``anchor`` when given). Every date the drift method counts back to (a baseline before
        the oldest onset) must be a date: ``DateRangeError`` otherwise."""
        calendar = ctx.process.calendar
        today = calendar.business_day_of(ctx.now)
        baseline = days_before(calendar, today, parse_duration(rule.baseline))
        recent = days_before(calendar, today, parse_duration(rule.recent))
        if max(recent, 2 * baseline + HORIZON_DAYS) >= today.toordinal():  # 0001-01-01 is 1
            raise DateRangeError(f"{ctx.process.name}: windows of {rule.recent} and {rule.baseline} "
                                 f"(and their lookback) before {today.isoformat()} reach before "
                                 "year 1")
        recent_from = today - timedelta(days=recent)
        increase = calendar.seconds(rule.min_increase_duration) / calendar.day_seconds
        horizon = HORIZON_DAYS
        if anchor is not None:  # the lookback reaches the anchored baseline, however old
            first = anchor.start or anchor.until - timedelta(days=baseline)
            horizon = max(horizon, (today - first).days - baseline + 1)
        return cls(DriftSettings(today=today, recent_from=recent_from, baseline_days=baseline,
                                 min_cases=rule.min_cases, min_ratio=rule.min_ratio,
                                 min_increase=increase, horizon_days=horizon,
                                 baseline_from=anchor.start if anchor else None,
                                 clear_fraction=rule.clear_fraction, clear_alpha=rule.clear_alpha),
                   calendar.day_seconds, anchor)

    @property
    def oldest(self) -> date:
        """The first day any series looks at."""
        return self.settings.today - timedelta(
            days=self.settings.baseline_days + self.settings.horizon_days)

    def lookback(self, table: pl.DataFrame, day: str) -> pl.DataFrame:
        """The rows of ``table`` whose ``day`` column falls in the lookback."""
        return table.filter(pl.col(day) >= self.oldest)


@dataclass(frozen=True)
class Hit:
    """A confirmed drift of one series and the rows it was found in."""

    drift: Drift
    rows: pl.DataFrame
    day_seconds: float
    waiting: pl.DataFrame | None = None
    """Open cases counted in the recent sample (their idle time so far), for an early finding."""

    def slow_cases(self, value: str) -> tuple[str, ...]:
        """Ids of the cases of the recent samples above the baseline p90, slowest first (cases
        still waiting first: they are the oldest work)."""
        threshold = self.drift.baseline.p90 * self.day_seconds
        ids: list[str] = []
        if self.waiting is not None:
            late = self.waiting.filter(pl.col("idle_s") >= threshold).sort("idle_s", descending=True)
            ids += late["case_id"].to_list()
        recent = self.rows[self.drift.recent_index.tolist()]
        ids += recent.filter(pl.col(value) >= threshold).sort(value, descending=True)["case_id"].to_list()
        return tuple(dict.fromkeys(ids))[:MAX_CASES]


@dataclass(frozen=True)
class Series:
    """One series as ``alerts.changepoint`` takes it, and its current CUSUM run if any."""

    days: Days
    values: Values
    """Business days."""
    onset: tuple[date, npt.NDArray[np.intp]] | None
    """``current_onset`` of the series, found once (the early look at a wait reuses it)."""

    @classmethod
    def of(cls, rows: pl.DataFrame, window: Window, value: str, day: str) -> Series:
        """``value`` (business seconds) of ``rows``, dated by ``day``, with its current run."""
        scale = window.day_seconds
        days = rows[day].to_numpy().astype("datetime64[D]")
        values = rows[value].to_numpy().astype(np.float64) / scale
        if rows.height < 2 * window.settings.min_cases:
            return cls(days, values, None)
        elapsed = rows["elapsed_s"].to_numpy().astype(np.float64) / scale
        if window.anchor is not None:
            return cls(days, values, (window.anchor.until,
                                      in_scope(days, values, window.settings, elapsed)))
        return cls(days, values, current_onset(days, values, window.settings, elapsed))

    def hit(self, rows: pl.DataFrame, window: Window) -> Hit | None:
        """``detect`` over the series: the confirmed drift of its current run, if any."""
        if self.onset is None:
            return None
        drift = confirm(self.days, self.values, window.settings, *self.onset)
        return None if drift is None else Hit(drift, rows, window.day_seconds)


def series_hit(rows: pl.DataFrame, window: Window, value: str, day: str) -> Hit | None:
    """``detect`` over one series: ``value`` in business seconds, dated by ``day``."""
    return Series.of(rows, window, value, day).hit(rows, window)


def segment_hits(rows: pl.DataFrame, rule: WaitDrift, window: Window, keys: tuple[str, ...],
                 value: str, day: str) -> tuple[list[tuple[str, str, Hit]], list[str]]:
    """Drifted segments of one series: those of the strongest attribute, and the other
    attributes' drifted values as ``key=value`` names (see the module docstring)."""
    found: dict[str, list[tuple[str, str, Hit]]] = {}
    for key in keys:
        column = segment_column(key)
        if column not in rows.columns or rows[column].null_count() == rows.height:
            continue
        values = rows[column].drop_nulls().unique().sort().to_list()
        if len(values) > rule.max_segment_values:
            continue
        for name in values:
            inside = pl.col(column) == name
            hit = series_hit(rows.filter(inside), window, value, day)
            rest = rows.filter(~inside.fill_null(False))
            if hit is not None and (window.anchor is not None
                                    or _confined(hit, rest, window, value, day)):
                found.setdefault(key, []).append((key, str(name), hit))
    if not found:
        return [], []
    best = max(found, key=lambda k: max(h.drift.ratio for _, _, h in found[k]))
    others = [f"{k}={v}" for key, hits in sorted(found.items()) if key != best for k, v, _ in hits]
    return found[best], others


def _confined(hit: Hit, rest: pl.DataFrame, window: Window, value: str, day: str) -> bool:
    """True unless the other cases slowed about as much over the same windows (then the drift is
    not the segment's: it is process-wide, and not yet confirmed as such)."""
    onset, settings = hit.drift.onset, window.settings
    days = rest[day]
    base = rest.filter((days >= onset - timedelta(days=settings.baseline_days)) & (days < onset))
    recent = rest.filter((days >= max(onset, settings.recent_from)) & (days <= settings.today))
    if min(base.height, recent.height) < settings.min_cases:
        return True
    then = max(float(base[value].median()), 1.0)  # type: ignore[arg-type]
    ratio = float(recent[value].median()) / then  # type: ignore[arg-type]
    return ratio < math.sqrt(hit.drift.ratio)


def figures(sample: Sample) -> dict[str, Any]:
    """A window's figures as evidence: median and p90 in business days, and the count."""
    return {"median_days": round(sample.median, 2), "p90_days": round(sample.p90, 2),
            "cases": sample.n}


def evidence(hit: Hit, window: Window) -> dict[str, Any]:
    """The evidence every drift finding carries: both windows, since, the test's p-value."""
    drift, settings = hit.drift, window.settings
    start = max(drift.onset, settings.recent_from)
    return {
        "recent": figures(drift.recent), "baseline": figures(drift.baseline),
        "window": {"from": start.isoformat(), "to": settings.today.isoformat()},
        "baseline_window": {
            "from": (drift.onset - timedelta(days=settings.baseline_days)).isoformat(),
            "to": (drift.onset - timedelta(days=1)).isoformat()},
        "since": drift.onset.isoformat(), "p_value": float(f"{drift.p_value:.3g}"),
        "ratio": None if near_zero(drift) else round(drift.ratio, 2),
        "increase_days": round(drift.recent.median - drift.baseline.median, 2),
    }


def near_zero(drift: Drift) -> bool:
    """The baseline median is near zero: no ratio is said (see ``NEAR_ZERO_DAYS``)."""
    return drift.baseline.median < NEAR_ZERO_DAYS


def severity(rule: WaitDrift, drift: Drift, window: Window) -> Severity:
    """The rule's severity, or critical at ``critical_ratio`` times the baseline or more; against
    a baseline near zero, at ``critical_ratio`` times the practical size (``min_increase``)."""
    ratio = (drift.recent.median / max(window.settings.min_increase, NEAR_ZERO_DAYS)
             if near_zero(drift) else drift.ratio)
    return Severity.CRITICAL if ratio >= rule.critical_ratio else rule.severity


def span_text(days: float, day_seconds: float) -> str:
    """A span of business time as people say it: ``4.6 business days``, ``3.5 business
    hours``, ``12 minutes``, ``under a minute``."""
    if days >= 1:
        return f"{days_text(days)} business days"
    seconds = days * day_seconds
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} business hours"
    return f"{seconds / 60:.0f} minutes" if seconds >= 60 else "under a minute"


def change_text(drift: Drift, day_seconds: float, segment: Mapping[str, str]) -> str:
    """``4.6 business days since D (baseline 2.1 business days)``, or against a baseline near
    zero, in absolute terms: ``4.6 business days since D, 4.5 business days more than its
    baseline of 3 minutes``."""
    now, then = drift.recent.median, drift.baseline.median
    head = f"{span_text(now, day_seconds)}{segment_text(segment)} since {drift.onset.isoformat()}"
    if near_zero(drift):
        return (f"{head}, {span_text(now - then, day_seconds)} more than its baseline of "
                f"{span_text(then, day_seconds)}")
    return f"{head} (baseline {span_text(then, day_seconds)})"


def days_text(value: float) -> str:
    """Business days as people say them: ``0.8``, ``6.1``, ``12``."""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def segment_text(segment: Mapping[str, str]) -> str:
    """`` for region=east`` (empty without a segment)."""
    return "".join(f" for {k}={v}" for k, v in segment.items())


def _leading(lookback: pl.DataFrame) -> dict[str, list[str]]:
    """For each target, the steps that usually lead to it: at least half of their completed
    transitions in the lookback went to it (see the module docstring)."""
    pairs = lookback.group_by("source", "target").agg(pl.len().alias("to"))
    totals = lookback.group_by("source").agg(pl.len().alias("all"))
    usual = pairs.join(totals, on="source").filter(pl.col("to") * 2 >= pl.col("all"))
    leads: dict[str, list[str]] = {}
    for source, target in usual.select("source", "target").iter_rows():
        leads.setdefault(target, []).append(source)
    return leads


def _waiting(ctx: RuleContext, sources: list[str], segment: Mapping[str, str]) -> pl.DataFrame:
    """Open cases at one of ``sources``, the steps that usually lead to an activity."""
    waiting = ctx.facts.open_cases.filter(pl.col("last_activity").is_in(sources))
    for key, name in segment.items():
        waiting = waiting.filter(pl.col(segment_column(key)) == name)
    return waiting


def _waiting_now(waiting: pl.DataFrame, day_seconds: float, base_p90_days: float) -> dict[str, Any]:
    """The open work before the activity as evidence: how many, how many overdue, the oldest."""
    idle = waiting["idle_s"].to_numpy() / day_seconds
    return {"cases": int(idle.size), "overdue": int((idle > base_p90_days).sum()),
            "oldest_days": round(float(idle.max()), 2) if idle.size else 0.0}


def _early_hit(ctx: RuleContext, rows: pl.DataFrame, window: Window, sources: list[str],
               series: Series) -> Hit | None:
    """The drift seen early, through the work still waiting (see the module docstring)."""
    settings, scale = window.settings, window.day_seconds
    days, values = series.days, series.values
    if series.onset is None:
        return None
    onset, index = series.onset
    base = values[index[baseline_of(days[index], onset, settings)]]
    started = np.flatnonzero(rows["started_day"].to_numpy().astype("datetime64[D]") >= np.datetime64(onset))
    waiting = _waiting(ctx, sources, {}).filter(pl.col("last_day") >= onset)
    recent = np.concatenate((values[started], waiting["idle_s"].to_numpy().astype(np.float64) / scale))
    compared = compare(base, recent, settings)
    if compared is None:
        return None
    return Hit(Drift(onset, *compared, started), rows, scale, waiting)


def expired(ctx: RuleContext, rule: WaitDrift, anchor: BaselineAnchor) -> bool:
    """An accepted level stops mattering once the CUSUM's lookback starts after the acceptance."""
    return Window.of(ctx, rule).oldest >= anchor.until


def _bottleneck(ctx: RuleContext, anchor: BaselineAnchor | None, scope: Scope) -> list[Finding]:
    """Findings for each activity whose wait drifted up, process-wide or in one segment (only
    the activities ``scope`` judges)."""
    rule = ctx.process.rules.bottleneck
    if not rule.enabled or ctx.facts.waits.is_empty():
        return []
    window = Window.of(ctx, rule, anchor)
    lookback = window.lookback(ctx.facts.waits, "ended_day")
    keys = tuple(k for k in rule.segments if k in ctx.facts.segment_keys)
    findings: list[Finding] = []
    leads = _leading(lookback)
    by_target = lookback.partition_by("target", as_dict=True, maintain_order=True)
    for (target,), rows in sorted(by_target.items()):
        subject = f"wait before {target}"
        if not scope.subject(subject):
            continue
        sources = leads.get(target, [])
        series = Series.of(rows, window, "wait_s", "ended_day")
        hit = series.hit(rows, window)
        if hit is None or not hit.drift.opens:  # the open work may show what opens one
            hit = _early_hit(ctx, rows, window, sources, series) or hit
        if hit is not None:
            findings.append(_finding(ctx, rule, window, sources, target, hit, {}, []))
            if hit.drift.opens:  # only holding an open alert: a segment may still open one
                continue
        if not scope.segmented(subject):
            continue
        hits, others = segment_hits(rows, rule, window, keys, "wait_s", "ended_day")
        findings.extend(_finding(ctx, rule, window, sources, target, h, {k: v}, others)
                        for k, v, h in hits)
    return findings


def _finding(ctx: RuleContext, rule: WaitDrift, window: Window, sources: list[str],
             target: str, hit: Hit, segment: dict[str, str], others: list[str]) -> Finding:
    drift = hit.drift
    summary = f"Wait before {target}: {change_text(drift, window.day_seconds, segment)}"
    facts = evidence(hit, window)
    facts["activity"] = target
    waiting = _waiting(ctx, sources, segment)
    facts["waiting_now"] = _waiting_now(waiting, window.day_seconds, drift.baseline.p90)
    if hit.waiting is not None:
        facts["recent"]["still_waiting"] = hit.waiting.height
    if others:
        facts["also_drifted"] = others
    return Finding(rule=BOTTLENECK.name, process=ctx.process.name, subject=f"wait before {target}",
                   severity=severity(rule, drift, window), summary=summary, evidence=facts,
                   segment=segment, since=drift.onset, cases=hit.slow_cases("wait_s"),
                   opens=drift.opens)


bottleneck = anchored("bottleneck", _bottleneck,
                      lambda ctx, _key, anchor: expired(ctx, ctx.process.rules.bottleneck, anchor))
"""Findings for each activity whose wait drifted up, each key against its anchor."""

BOTTLENECK: Final = Rule(name="bottleneck", settings=WaitDrift, run=bottleneck, baseline=True)
