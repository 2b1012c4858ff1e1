"""Stuck rule: open cases idle far longer than normal at their current step, or past the SLA.

A case is open while its last event is not one of the process's end activities (configured, or
learned by the registry; when the definition has none, learned here the registry's way,
``alerts.registry.learn_end_activities``). Its idle time is the business time
(``ctx.process.calendar``) from its last event to now. It is stuck when idle longer than the
process's ``sla`` (when one is set: unchanged), or, without an SLA, when ordinary waits at its
step cannot explain it. One finding per step (``stuck at <step>``), longest idle first. A case
whose last event is an end activity is finished, never stuck. Its "since" is the day the listed
cases became stuck: when the ``needed``-th of them (the first, where one alone is) crossed the
step's threshold, not the oldest case's last event.

**Hysteresis.** A step whose open alert fired keeps it while cases stay beyond T0 ("far
longer than normal"), even fewer than ``needed``: they are returned as a finding with ``opens``
False (listed from T0), which holds an open alert and never opens one. Without it, receipt's
"stuck at Confirmation of receipt" fired, cleared the week one case moved on, and fired again.

**Abandoned.** A case idle far beyond anything the process does (``abandon_factor``, 10, times the
longest of the p99.9 of all its waits, the step's T0 and its one-case extreme T1; or
``abandon_after``, 250 business days, where shorter) is not "stuck for 475-1660 business days":
the process's abandoned cases are findings apart (subject ``abandoned``), which say so.

**Reported once.** Abandoned cases are grouped by the month they crossed the abandonment
threshold (segment ``month``, ``stuck/<process>/abandoned/month=2006-11``): each month's key
fires once, announcing the cases abandoned in it, and closes when they leave the rounds'
``history`` (a case abandoned after 250 business days leaves a year's window a few weeks later:
nothing in the data resolves it, and nobody is working on it). One key for every abandoned case
re-opened the alert whenever another case was abandoned and resolved as each left the window
(the road-traffic fines: flapping in 2006). A back office reviews such backlog by month ("cases
left in November"); a later case never re-announces earlier ones, and one abandoned in the
same month joins that month's open alert (listed there, and in the weekly digest).

**Why not a fixed multiple of the p90.** 5 x p90 is crossed by about one ordinary wait in a
thousand, and a step sees thousands a year (claims Assessment about 6,700, payments Triage
15,000): evaluated every fifth business day through clean simulated years (seeds 17-21), that
rule listed 100 ordinary cases in 130 findings (onboarding 20, payments 15, claims 65 cases).
The threshold has to grow with how many waits could cross it.

**The normal wait after a step** (business time to the case's next event, over the completed
transitions) is modelled per *branch* (the next step: hours when a settlement offer follows an
assessment, days when an expert inspection does) as a log-normal through the branch's upper
quarter (least squares of log quantiles p75..p99.9 on normal scores), weighted by the branch's
share of the step's transitions. The upper quarter, not the whole branch: simulated waits are
sums of log-normal parts (queue, work, an outside party's answer) whose tail is steeper than
their body (log sigma 0.59-0.74 over whole branches, 0.64-0.77 over their upper quarters, 0.75
in the parts); a whole-branch fit understated the far tail about 5x. Sigma is taken at its upper
95 % confidence bound and with the predictive ``sqrt(1 + 1/n)``; a branch with fewer than
``MIN_FIT`` waits takes its step's fit, a step with too few waits the whole process's. That gives
S(t), the chance one ordinary wait exceeds t, and with N (the step's completed transitions a
year, from the data's span) the crossings a year, N x S(t). Two tests, each allowed
``FALSE_ALARMS_PER_YEAR`` = 0.001 chance alarms per step and year:

1. **One case, beyond the extreme**: idle beyond T1, where N x S(T1) = 0.001, and never less
   than the step's longest completed wait (a guard where the real tail is heavier) nor T0.
2. **Several cases, far longer than normal**: T0 = ``idle_factor`` x the step's p90, at least
   ``min_idle`` (5 x p90 and 3 business days by default). The ordinary cases idle beyond T0 at a
   moment are Poisson with mean lambda = N / 250 x the integral of S from T0 to the data's span
   (M/G/inf); a k-th one arrives N x S(T0) x P(Poisson(lambda) >= k - 1) times a year at most
   (both figures the fit's, or the completed waits' own where larger). Cases beyond T0 are listed
   from the least k that makes that <= 0.001 (k = 1 where T0 is already extreme).

**False alarms.** At most 0.002 per step and year where the fit holds, 0.014-0.022 per process
and year (7-11 steps). Measured with ``BACKLIGHT_BENCH_SEEDS=20 python -m pytest -m bench -s
tests/test_bench_stuck.py`` (every fifth business day of 60 clean simulated process-years, seeds
100-119), false stuck cases: budget 0.1 -> 11, 0.01 -> 1, 0.001 -> 0 (the bound: about 104, 10,
1.0): conservative, mostly from the sigma bound and from mixed branches. Seeds 17-21 give none
(``tests/test_alerts_clean_year.py``). Arrivals burstier than Poisson make test 2 less
conservative than stated.

**Detection delay** on the simulator, 2 % of new cases stopping after a step, evaluated daily
(business days from a case's stop to its listing, median; the first alarm after the first stop):
onboarding after Verify identity 7 (7-12; T0 5-7, k 3-4), after KYC/AML screening 10 (10-17);
payments after Triage 3.5 (4-7; T0 3, k 3-4); claims after Register claim 9 (13-19), after
Assessment, where an expert inspection normally takes days, 18 (25-32; T0 16-18, k 4-8). One
case stopping on its own is listed at T1, after a clean year: onboarding Verify identity 25-28,
KYC/AML screening 35-43, payments Triage 9-10, claims Register claim 28-37, Assessment 105-186
business days (ordinary Assessment waits there exceed 20 business days 12 times a year and 40
about once in two years: 124 and 5 in 10 simulated years); only an SLA catches a lone case
sooner.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from statistics import NormalDist
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from alerts.calendar import WorkCalendar, to_us
from alerts.context import Rule, RuleContext
from alerts.duration import parse_duration
from alerts.registry import learn_end_activities
from alerts.thresholds import Stuck
from schemas.alerts import Finding

MIN_TRANSITIONS: Final = 5  # completed transitions from a step before its own figures are trusted
MIN_FIT: Final = 40  # positive waits before a branch gets its own log-normal
FALSE_ALARMS_PER_YEAR: Final = 0.001  # chance alarms per step and year allowed to each test
YEAR_DAYS: Final = 250.0  # business days in a year
_Z95: Final = 1.6449  # one-sided 95 % normal quantile, for sigma's upper confidence bound
LEVELS: Final = np.array([0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999])
_SCORES: Final = np.array([NormalDist().inv_cdf(float(p)) for p in LEVELS])
STEP: Final = pl.when(pl.col("lifecycle") == "start").then(
    pl.col("activity") + " (started)").otherwise(pl.col("activity")).alias("step")
"""Where a case is: its last activity, "(started)" while that is a start event (work ongoing)."""

Floats = npt.NDArray[np.float64]
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _business(calendar: WorkCalendar, start: pl.Series, end: pl.Series | int) -> np.ndarray:
    """Working seconds between UTC timestamps (a column, or one moment in microseconds)."""
    a = start.dt.epoch("us").to_numpy().astype(np.int64)
    b = end.dt.epoch("us").to_numpy().astype(np.int64) if isinstance(end, pl.Series) else \
        np.full(a.shape, end, dtype=np.int64)
    return calendar.business_seconds(a, b)


def transitions(df: pl.DataFrame, calendar: WorkCalendar) -> pl.DataFrame:
    """Every completed transition of an ordered frame: step, next (the next event's step) and
    the business wait in seconds (its ``step`` column is used when it has one)."""
    same = pl.col("case_id").shift(-1) == pl.col("case_id")
    rows = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), same.alias("same")
                     ).filter(pl.col("same"))["row"].to_numpy()
    moments = df["timestamp"].dt.epoch("us").to_numpy().astype(np.int64)
    local = calendar.local_us(moments)  # each moment once: a wait ends where the next starts
    wait = calendar.business_seconds(moments[rows], moments[rows + 1],
                                     local=(local[rows], local[rows + 1]))
    steps = df["step"] if "step" in df.columns else df.select(STEP).to_series()
    return pl.DataFrame([steps.gather(rows).alias("step"), steps.gather(rows + 1).alias("next"),
                         pl.Series("wait", wait, dtype=pl.Float64)])


def normal_waits(waits: pl.DataFrame) -> pl.DataFrame:
    """Per step: transitions and p90_s (the process-wide p90 below ``MIN_TRANSITIONS``)."""
    everything = waits["wait"].quantile(0.9, "linear") if waits.height else None
    return (waits.group_by("step")
            .agg(pl.len().alias("transitions"), pl.col("wait").quantile(0.9, "linear").alias("p90_s"))
            .with_columns(pl.when(pl.col("transitions") >= MIN_TRANSITIONS)
                          .then(pl.col("p90_s")).otherwise(everything).alias("p90_s")))


def _fits(quantiles: pl.DataFrame) -> tuple[Floats, Floats, npt.NDArray[np.bool_]]:
    """Location and spread of the log-normal through the upper quarter of each row's positive
    waits (least squares of the log quantiles ``q0..`` on normal scores, at the ``LEVELS`` with at
    least 5 waits beyond), the spread at its upper 95 % confidence bound and with the predictive
    ``sqrt(1 + 1/n)``; and which rows have the ``MIN_FIT`` waits it needs."""
    n = quantiles["n"].to_numpy().astype(np.float64)
    q = quantiles.select([f"q{i}" for i in range(LEVELS.size)]).to_numpy().astype(np.float64)
    use = ((1 - LEVELS)[None, :] * n[:, None] >= 5) & ~np.isnan(q)
    w = use.astype(np.float64)
    count = np.maximum(w.sum(axis=1), 1.0)
    z_mean = (w * _SCORES).sum(axis=1) / count
    q_mean = (w * np.where(use, q, 0.0)).sum(axis=1) / count
    dz = np.where(use, _SCORES - z_mean[:, None], 0.0)
    dq = np.where(use, q - q_mean[:, None], 0.0)
    slope = np.maximum((dz * dq).sum(axis=1) / np.maximum((dz * dz).sum(axis=1), 1e-12), 1e-9)
    fits = n >= MIN_FIT
    quarter = np.maximum(n / 4 - 1, 1.0)
    scale = slope * (1 + _Z95 / np.sqrt(2 * quarter)) * np.sqrt(1 + 1 / np.maximum(n, 1.0))
    return q_mean - slope * z_mean, scale, fits


def _quantiles(waits: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Per group: n (positive waits) and the quantiles q0.. of their logs at ``LEVELS``."""
    logs = waits.filter(pl.col("wait") > 0).select(*by, pl.col("wait").log().alias("log"))
    figures = [pl.len().alias("n"),
               *[pl.col("log").quantile(float(p), "linear").alias(f"q{i}")
                 for i, p in enumerate(LEVELS)]]
    return logs.group_by(by).agg(figures) if by else logs.select(figures)


@dataclass(frozen=True)
class Tail:
    """S(t): the chance one ordinary wait at a step exceeds t seconds, a mixture of log-normals
    (one per branch; zero waits never exceed), and the completed waits' own figures beyond T0."""

    weight: Floats
    loc: Floats
    scale: Floats
    share: float = 0.0  # of the completed waits longer than T0
    excess: float = 0.0  # their mean excess over T0, up to the data's span (seconds)
    longest: float = 0.0  # the longest completed wait

    def survival(self, t: Floats) -> Floats:
        """S at each of ``t`` (seconds, positive)."""
        z = (np.log(t)[..., None] - self.loc) / (self.scale * math.sqrt(2))
        return np.asarray((0.5 * _erfc(z) * self.weight).sum(axis=-1), dtype=np.float64)

    def quantile(self, p: float) -> float:
        """The least t (seconds, to 0.1 %) with S(t) <= p; infinite where even the search's
        bound (2,300 years of business time) is not that far out: no single case is then
        extreme enough, and the bound is never shown as a figure."""
        lo, hi = 0.0, 25.0  # log seconds: 1 s .. 2,300 years of business time
        if self.survival(np.array([1.0]))[0] <= p:
            return 1.0
        if self.survival(np.array([math.exp(hi)]))[0] > p:
            return math.inf
        while hi - lo > 1e-3:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self.survival(np.array([math.exp(mid)]))[0] <= p else (mid, hi)
        return math.exp(hi)

    def beyond(self, t: float, until: float) -> tuple[float, float]:
        """S(t) and the integral of S from t to ``until`` (seconds): the fit's, or the completed
        waits' own where larger."""
        if until <= t:
            return max(float(self.survival(np.array([t]))[0]), self.share), 0.0
        grid = np.geomspace(t, until, 100)
        s = self.survival(grid)
        area = float(((s[1:] + s[:-1]) / 2 * np.diff(grid)).sum())
        return max(float(s[0]), self.share), max(area, self.excess)


def tails(waits: pl.DataFrame, t0: pl.DataFrame, span: float) -> dict[str, tuple[Tail, int]]:
    """The tail of each step in ``t0`` (step, t0_s), with the transitions it stands for: its own,
    or the whole process's (one log-normal through all its waits) where the step has too few
    (fewer than ``MIN_TRANSITIONS``, or fewer than ``MIN_FIT`` positive waits). Branches with fewer
    than ``MIN_FIT`` take the step's fit."""
    mine = waits.join(t0, on="step", how="semi")
    branches, steps = _quantiles(mine, ["step", "next"]), _quantiles(mine, ["step"])
    steps = steps.join(mine.group_by("step").agg(pl.len().alias("all")), on="step")
    b_loc, b_scale, b_fits = _fits(branches)
    s_loc, s_scale, s_fits = _fits(steps)
    whole = {step: (s_loc[i], s_scale[i], all_) for i, (step, all_, ok) in enumerate(
        zip(steps["step"], steps["all"], s_fits, strict=True)) if ok and all_ >= MIN_TRANSITIONS}
    guards = (mine.join(t0, on="step").group_by("step").agg(
        (pl.col("wait") > pl.col("t0_s")).mean().alias("share"),
        (pl.col("wait").clip(pl.col("t0_s"), max(span, 0.0)) - pl.col("t0_s")).clip(0)
        .mean().alias("excess"), pl.col("wait").max().alias("longest")))
    guard = {row[0]: row[1:] for row in guards.iter_rows()}
    out: dict[str, tuple[Tail, int]] = {}
    for step in t0["step"]:
        if step not in whole:
            continue
        loc, scale, all_ = whole[step]
        at = (branches["step"] == step).to_numpy()
        out[step] = (Tail(branches["n"].to_numpy()[at] / all_,
                          np.where(b_fits[at], b_loc[at], loc),
                          np.where(b_fits[at], b_scale[at], scale), *guard[step]), all_)
    sparse = t0.filter(~pl.col("step").is_in(list(out)))
    if sparse.height:  # one log-normal through all the process's waits
        every = _quantiles(waits, [])
        loc, scale, fits = _fits(every)
        weight = every["n"].to_numpy() / max(waits.height, 1) if fits[0] else np.zeros(0)
        w = waits["wait"].to_numpy()
        for step, t in sparse.select("step", "t0_s").iter_rows():
            figures = (float((w > t).mean()), float((np.clip(w, t, max(span, t)) - t).mean()),
                       float(w.max())) if w.size else (0.0, 0.0, 0.0)
            out[step] = (Tail(weight, loc[:weight.size], scale[:weight.size], *figures),
                         waits.height)
    return out


def _poisson_at_least(k: int, mean: float) -> float:
    """P(Poisson(mean) >= k)."""
    term, below = math.exp(-mean), 0.0
    for i in range(k):
        below += term
        term *= mean / (i + 1)
    return max(0.0, 1.0 - below)


@dataclass(frozen=True)
class Verdict:
    """How one step judges idle cases without an SLA."""

    listed_from: float  # seconds idle from which cases are listed: T0 or T1
    single: float  # T1
    needed: int  # k: cases beyond T0 that ordinary waits do not explain
    expected: float  # lambda: ordinary cases idle beyond T0 at any moment


def judge(tail: Tail, per_year: float, t0: float, span: float, day: float, late: int) -> Verdict:
    """The step's verdict, given ``late`` open cases idle beyond ``t0`` and its tail: ``per_year``
    completed transitions a year, ``span`` of history, ``day`` a business day (all seconds)."""
    crossing, area = tail.beyond(t0, span)
    expected = per_year / YEAR_DAYS * area / day
    needed = 1
    while per_year * crossing * _poisson_at_least(needed - 1, expected) > FALSE_ALARMS_PER_YEAR:
        needed += 1
    single = max(t0, tail.longest, tail.quantile(FALSE_ALARMS_PER_YEAR / max(per_year, 1e-9)))
    return Verdict(t0 if late >= needed else single, single, needed, expected)


def _days(calendar: WorkCalendar, seconds: float) -> float:
    return round(calendar.business_days(seconds), 1)


def stuck(ctx: RuleContext) -> list[Finding]:
    """One finding per step where open cases have been idle too long, listing them."""
    s, calendar = ctx.process.rules.stuck, ctx.process.calendar
    df = ctx.events.df.filter(pl.col("timestamp") <= ctx.now.astimezone(UTC)).with_columns(STEP)
    if df.is_empty():
        return []
    ends = set(ctx.process.end_activities) or set(learn_end_activities(ctx.events, now=ctx.now))
    last = df.group_by("case_id", maintain_order=True).last().filter(
        ~pl.col("activity").is_in(list(ends)) | (pl.col("lifecycle") == "start"))
    if last.is_empty():
        return []
    waits = transitions(df, calendar)
    normal = normal_waits(waits)
    process_p90 = float(np.nanmax(normal["p90_s"].to_numpy())) if normal.height else 0.0
    min_idle = calendar.seconds(parse_duration(s.min_idle))
    sla = calendar.seconds(ctx.process.sla) if ctx.process.sla is not None else None
    now_us = to_us(ctx.now)
    idle = _business(calendar, last["timestamp"], now_us)
    table = (last.with_columns(pl.Series("idle_s", idle))
             .join(normal.select("step", "p90_s"), on="step", how="left")
             .with_columns(pl.col("p90_s").fill_null(process_p90))
             .with_columns(pl.max_horizontal(pl.col("p90_s") * s.idle_factor, pl.lit(min_idle))
                           .alias("t0_s")))
    span = float(_business(calendar, df.select(pl.col("timestamp").min()).to_series(), now_us)[0])
    verdicts = _verdicts(table, waits, span, calendar.day_seconds)
    table = table.join(verdicts, on="step", how="left").with_columns(
        pl.col("limit_s").fill_null(pl.col("t0_s")))
    table = table.with_columns(_far_beyond(waits, calendar, s).alias("abandon_s"))
    abandoned = pl.col("idle_s") > pl.col("abandon_s")
    late = pl.col("idle_s") > pl.col("limit_s")
    if sla is not None:
        late = late | (pl.col("idle_s") > sla)
    order = (["idle_s", "case_id"], [True, False])
    stuck_cases = table.filter(late & ~abandoned).sort(order[0], descending=order[1])
    found = []
    for (step,), group in stuck_cases.group_by("step", maintain_order=True):
        if group.height < s.min_cases:
            continue
        found.append(_finding(ctx, str(step), group, sla))
    # Hysteresis: fewer cases beyond T0 than ordinary waits explain hold an open alert.
    firing = {f.evidence["step"] for f in found}
    held = table.filter((pl.col("idle_s") > pl.col("t0_s")) & ~late & ~abandoned
                        & ~pl.col("step").is_in(list(firing)))
    for (step,), group in held.sort(order[0], descending=order[1]).group_by(
            "step", maintain_order=True):
        if group.height >= s.min_cases:
            holding = group.with_columns(pl.col("t0_s").alias("limit_s"))
            found.append(dataclasses.replace(_finding(ctx, str(step), holding, sla), opens=False))
    left = table.filter(abandoned).sort(order[0], descending=order[1])
    if left.height:
        crossed = [_crossed(calendar, ctx.now, float(i - a)).strftime("%Y-%m")
                   for i, a in left.select("idle_s", "abandon_s").iter_rows()]
        left = left.with_columns(pl.Series("month", crossed, dtype=pl.String))
        for (month,), group in left.group_by("month", maintain_order=True):
            found.append(_abandoned(ctx, group, waits, str(month)))
    return sorted(found, key=lambda f: f.key)


ABANDONED: Final = "abandoned"
"""The subject of the findings listing a process's abandoned cases (one per month they were
abandoned in: segment ``month``)."""


def _far_beyond(waits: pl.DataFrame, calendar: WorkCalendar, s: Stuck) -> pl.Expr:
    """Business seconds idle beyond which a case is abandoned (per row of the open cases):
    ``abandon_factor`` times the longest of the p99.9 of every completed wait of the process,
    the step's "far longer than normal" T0 and its one-case extreme T1 (where finite), or
    ``abandon_after`` where shorter; never below T0."""
    after = calendar.seconds(parse_duration(s.abandon_after))
    p999 = float(waits["wait"].quantile(0.999, "linear") or 0.0) if waits.height else 0.0
    single = pl.when(pl.col("single_s").is_finite()).then(pl.col("single_s")).otherwise(None)
    far = pl.max_horizontal(pl.lit(p999), pl.col("t0_s"), single) * s.abandon_factor
    return pl.max_horizontal(pl.min_horizontal(far, pl.lit(after)), pl.col("t0_s"))


def _crossed(calendar: WorkCalendar, now: datetime, over_s: float) -> date:
    """The business day a case idle ``over_s`` business seconds beyond a threshold crossed it."""
    back = math.floor(max(over_s, 0.0) / calendar.day_seconds)
    return calendar.add_business_days(calendar.business_day_of(now), -back)


def _abandoned(ctx: RuleContext, group: pl.DataFrame, waits: pl.DataFrame, month: str) -> Finding:
    """The finding of a process's cases abandoned in ``month`` (when they crossed the
    abandonment threshold): idle far beyond any of its waits."""
    s, calendar = ctx.process.rules.stuck, ctx.process.calendar
    listed = group.head(s.max_listed)
    cases = [{"case_id": row["case_id"], "step": row["step"],
              "idle_days": _days(calendar, row["idle_s"]), "since": row["timestamp"].isoformat()}
             for row in listed.iter_rows(named=True)]
    idle = group["idle_s"].to_numpy()
    low, high = _days(calendar, float(idle.min())), _days(calendar, float(idle.max()))
    span = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    steps = group.group_by("step").len().sort(["len", "step"], descending=[True, False])
    at = ", ".join(f"{step} ({n})" for step, n in steps.iter_rows())
    p999 = float(waits["wait"].quantile(0.999, "linear") or 0.0) if waits.height else 0.0
    threshold = float(group["abandon_s"].min())  # type: ignore[arg-type]
    plural = "case" if group.height == 1 else "cases"
    since = min(_crossed(calendar, ctx.now, float(i - a)) for i, a in
                listed.select("idle_s", "abandon_s").iter_rows())
    return Finding(
        rule=STUCK.name, process=ctx.process.name, subject=ABANDONED, severity=s.severity,
        summary=(f"{group.height} {ctx.process.name} {plural} abandoned in {month}, not stuck: "
                 f"no event for {span} business days, {_beyond(calendar, p999, threshold, s)}; "
                 f"left at {at}"),
        evidence={"count": group.height, "cases": cases,
                  "steps": {str(step): int(n) for step, n in steps.iter_rows()},
                  "abandoned_after_days": _days(calendar, threshold),
                  "longest_wait_p999_days": _days(calendar, p999),
                  "abandon_factor": s.abandon_factor, "abandon_after": s.abandon_after,
                  "month": month},
        segment={"month": month}, since=since, cases=tuple(str(c) for c in listed["case_id"]))


def _beyond(calendar: WorkCalendar, p999: float, threshold: float, s: Stuck) -> str:
    """Why the cases count as abandoned: far beyond any wait of the process, or (where the
    process's own longest waits reach that far) over ``abandon_after``; never "far beyond"
    a longest wait that is longer than the idle time stated."""
    longest = f"{_days(calendar, p999):g} business days at p99.9"
    if p999 * s.abandon_factor <= threshold * (1 + 1e-9):
        return f"far beyond any wait of the process (its longest: {longest})"
    return (f"over the {s.abandon_after} after which a case counts as abandoned (the "
            f"process's longest waits: {longest})")


def _verdicts(table: pl.DataFrame, waits: pl.DataFrame, span: float, day: float) -> pl.DataFrame:
    """step, limit_s, single_s, needed, expected for each step with a case idle beyond T0."""
    over = (table.filter(pl.col("idle_s") > pl.col("t0_s"))
            .group_by("step").agg(pl.len().alias("late"), pl.col("t0_s").first()))
    years = max(span / day, 1.0) / YEAR_DAYS
    fitted = tails(waits, over.select("step", "t0_s"), span) if over.height else {}
    rows: list[dict[str, Any]] = []
    for step, late, t0 in over.iter_rows():
        tail, transitions_ = fitted[step]
        v = judge(tail, transitions_ / years, t0, span, day, late)
        rows.append({"step": step, "limit_s": v.listed_from, "single_s": v.single,
                     "needed": v.needed, "expected": v.expected})
    schema = {"step": pl.String, "limit_s": pl.Float64, "single_s": pl.Float64,
              "needed": pl.Int64, "expected": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _finding(ctx: RuleContext, step: str, group: pl.DataFrame, sla: float | None) -> Finding:
    s, calendar = ctx.process.rules.stuck, ctx.process.calendar
    listed = group.head(s.max_listed)
    cases: list[dict[str, Any]] = [
        {"case_id": row["case_id"], "step": step, "idle_days": _days(calendar, row["idle_s"]),
         "since": row["timestamp"].isoformat()}
        for row in listed.iter_rows(named=True)]
    idle = group["idle_s"].to_numpy()
    low, high = _days(calendar, float(idle.min())), _days(calendar, float(idle.max()))
    normal = _days(calendar, float(group["p90_s"][0]))
    span = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    plural = "case" if group.height == 1 else "cases"
    terms = [f"normal: under {max(normal, 0.1):g}"]  # never "under 0": p90 rounds to 0.0
    if ctx.process.sla is not None:
        terms.insert(0, f"SLA {ctx.process.sla}")
    first = group.row(0, named=True)
    single = first.get("single_s")
    since = _since(ctx, group, sla)
    return Finding(
        rule=STUCK.name, process=ctx.process.name, subject=f"stuck at {step}", severity=s.severity,
        summary=(f"{group.height} {ctx.process.name} {plural} stuck at {step} for {span} "
                 f"business days ({'; '.join(terms)})"),
        evidence={"step": step, "count": group.height, "cases": cases,
                  "normal_p90_days": normal, "idle_factor": s.idle_factor,
                  "threshold_days": _finite_days(calendar, first["limit_s"]),
                  "far_longer_days": _days(calendar, float(first["t0_s"])),
                  "single_case_days": _finite_days(calendar, single),
                  "cases_needed": first.get("needed"),
                  "expected_idle_cases": (None if first.get("expected") is None
                                          else round(float(first["expected"]), 3)),
                  "min_idle": s.min_idle,
                  "sla_days": None if sla is None else _days(calendar, sla)},
        since=since, cases=tuple(str(c) for c in listed["case_id"]))


def _finite_days(calendar: WorkCalendar, seconds: float | None) -> float | None:
    """Business days, or None where there is no finite figure to show."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return _days(calendar, seconds)


def _since(ctx: RuleContext, group: pl.DataFrame, sla: float | None) -> date:
    """When the condition the finding lists began: the day the listed cases became stuck,
    i.e. when the ``needed``-th of them (the first, where one alone is stuck) crossed the
    step's threshold (or the SLA, when sooner)."""
    calendar = ctx.process.calendar
    listed = group.head(ctx.process.rules.stuck.max_listed)
    over = []
    for row in listed.iter_rows(named=True):
        limits = [row["limit_s"]] + ([sla] if sla is not None else [])
        over.append(row["idle_s"] - min(limit for limit in limits if limit is not None))
    needed = group.row(0, named=True).get("needed") or 1
    if row_limit := [o for o in over if o >= 0]:
        over = row_limit
    ranked = sorted(over, reverse=True)
    at = ranked[min(int(needed), len(ranked)) - 1]
    return _crossed(calendar, ctx.now, at)


STUCK: Final = Rule(name="stuck", settings=Stuck, run=stuck)
