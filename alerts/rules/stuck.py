"""Stuck rule: open cases idle far longer than normal at their current step, or past the SLA.

A case is open while its last event is not one of the process's end activities (configured, or
learned by the registry; when the definition has none, learned here the registry's way,
``alerts.registry.learn_end_activities``). Its idle time is the business time
(``ctx.process.calendar``) from its last event to now. It is stuck when

- idle longer than the process's ``sla`` (when one is set), or
- idle more than ``idle_factor`` x the p90 of the normal wait after its current step (the
  business time from that step to the next event, over every completed transition of the
  process) and at least ``min_idle``; a step with fewer than ``MIN_TRANSITIONS`` completed
  transitions uses the process-wide p90 instead, a step never left the longest step p90.

False alarms: with log-normal waits, 5 x p90 lies about 3 standard deviations beyond the p90
(roughly one wait in a thousand exceeds it), and ``min_idle`` (3 business days) keeps short
steps from firing on an ordinary slow day; clean simulated years give no stuck case at their
end. One finding per step (``stuck at <step>``) listing the cases, longest idle first.

Detection delay is the threshold itself: on the simulator a case that stops after Verify
identity (onboarding) is listed 6-7 business days later, after Triage (payments) 3, after
Assessment (claims, where an expert inspection normally takes days) about 17.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Final

import numpy as np
import polars as pl

from alerts.calendar import WorkCalendar, to_us
from alerts.context import RuleContext
from alerts.duration import parse_duration
from alerts.registry import learn_end_activities
from schemas.alerts import Finding

RULE: Final = "stuck"
MIN_TRANSITIONS: Final = 5  # completed transitions from a step before its own p90 is trusted
STEP: Final = pl.when(pl.col("lifecycle") == "start").then(
    pl.col("activity") + " (started)").otherwise(pl.col("activity")).alias("step")
"""Where a case is: its last activity, "(started)" while that is a start event (work ongoing)."""


def _business(calendar: WorkCalendar, start: pl.Series, end: pl.Series | int) -> np.ndarray:
    """Working seconds between UTC timestamps (a column, or one moment in microseconds)."""
    a = start.dt.epoch("us").to_numpy().astype(np.int64)
    b = end.dt.epoch("us").to_numpy().astype(np.int64) if isinstance(end, pl.Series) else \
        np.full(a.shape, end, dtype=np.int64)
    return calendar.business_seconds(a, b)


def normal_waits(df: pl.DataFrame, calendar: WorkCalendar) -> pl.DataFrame:
    """p90 of the business wait after each step: step, transitions, p90_s (ordered frame; its
    ``step`` column is used when it has one, else ``STEP`` is computed)."""
    same = pl.col("case_id").shift(-1) == pl.col("case_id")
    rows = df.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), same.alias("same")
                     ).filter(pl.col("same"))["row"].to_numpy()
    moments = df["timestamp"].dt.epoch("us").to_numpy().astype(np.int64)
    local = calendar.local_us(moments)  # each moment once: a wait ends where the next starts
    wait = calendar.business_seconds(moments[rows], moments[rows + 1],
                                     local=(local[rows], local[rows + 1]))
    steps = df["step"] if "step" in df.columns else df.select(STEP).to_series()
    waits = pl.DataFrame([steps.gather(rows), pl.Series("wait", wait)])
    everything = waits["wait"].quantile(0.9, "linear") if waits.height else None
    return (waits.group_by("step")
            .agg(pl.len().alias("transitions"), pl.col("wait").quantile(0.9, "linear").alias("p90_s"))
            .with_columns(pl.when(pl.col("transitions") >= MIN_TRANSITIONS)
                          .then(pl.col("p90_s")).otherwise(everything).alias("p90_s")))


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
    normal = normal_waits(df, calendar)
    process_p90 = float(np.nanmax(normal["p90_s"].to_numpy())) if normal.height else 0.0
    min_idle = calendar.seconds(parse_duration(s.min_idle))
    sla = calendar.seconds(ctx.process.sla) if ctx.process.sla is not None else None
    idle = _business(calendar, last["timestamp"], to_us(ctx.now))
    table = (last.with_columns(pl.Series("idle_s", idle))
             .join(normal.select("step", "p90_s"), on="step", how="left")
             .with_columns(pl.col("p90_s").fill_null(process_p90))
             .with_columns(pl.max_horizontal(pl.col("p90_s") * s.idle_factor, pl.lit(min_idle))
                           .alias("limit_s")))
    late = pl.col("idle_s") > pl.col("limit_s")
    if sla is not None:
        late = late | (pl.col("idle_s") > sla)
    stuck_cases = table.filter(late).sort(["idle_s", "case_id"], descending=[True, False])
    found = []
    for (step,), group in stuck_cases.group_by("step", maintain_order=True):
        if group.height < s.min_cases:
            continue
        found.append(_finding(ctx, str(step), group, sla))
    return sorted(found, key=lambda f: f.subject)


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
    terms = [f"normal: under {normal:g}"]
    if ctx.process.sla is not None:
        terms.insert(0, f"SLA {ctx.process.sla}")
    oldest: datetime = group["timestamp"].min()  # type: ignore[assignment]
    since: date = calendar.business_day_of(oldest)
    return Finding(
        rule=RULE, process=ctx.process.name, subject=f"stuck at {step}", severity=s.severity,
        summary=(f"{group.height} {ctx.process.name} {plural} stuck at {step} for {span} "
                 f"business days ({'; '.join(terms)})"),
        evidence={"step": step, "count": group.height, "cases": cases,
                  "normal_p90_days": normal, "idle_factor": s.idle_factor,
                  "threshold_days": _days(calendar, float(group["limit_s"][0])),
                  "min_idle": s.min_idle,
                  "sla_days": None if sla is None else _days(calendar, sla)},
        since=since, cases=tuple(str(c) for c in listed["case_id"]))
