"""The rework rule's measurement: which cases it compares, and how far one subject has shifted.

This module owns the recent window and the baseline (``window_start``, ``baseline_span``,
anchored or sliding), the cases started in each and their completions (``Windows``, built by
``case_windows``), and ``Windows.measure``: one subject's hits compared with the baseline at the
same case ages (``Shift``, with its guards, support and hysteresis levels) and dated by the
"since when" Bernoulli CUSUM (``change_point``). What the findings say, and which subjects are
judged, is ``alerts.rules.rework``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import polars as pl

from alerts.calendar import WorkCalendar
from alerts.context import BaselineAnchor, RuleContext
from alerts.duration import Duration, parse_duration
from alerts.errors import DateRangeError
from alerts.thresholds import Rework as ReworkSettings
from mining.frame import Events
from mining.rework import rework_basis
from schemas.event import to_time_us

MIN_Z: Final = 3.0  # one-sided test every shift must also pass
MAX_CASES_LISTED: Final = 50


def window_start(calendar: WorkCalendar, end: datetime, length: Duration) -> datetime:
    """The start of a window of ``length`` ending at ``end``: business time counts whole
    business days back (to local midnight), wall-clock time is subtracted as it is; a start
    before year 1 raises ``DateRangeError``."""
    if not length.business:
        try:
            return end - timedelta(seconds=length.wall_seconds)
        except OverflowError:
            raise DateRangeError(f"a window of {length} before {end.isoformat()} starts before "
                                 "year 1") from None
    days = max(1, math.ceil(calendar.seconds(length) / calendar.day_seconds - 1e-9))
    first = calendar.add_business_days(calendar.business_day_of(end), -days)
    return datetime.combine(first, time(0), tzinfo=ZoneInfo(calendar.timezone))


def utc(moment: datetime) -> datetime:
    """An aware moment in UTC, comparable with the event frame's timestamps."""
    return moment.astimezone(UTC)


def change_point(hits: npt.NDArray[np.bool_], p0: npt.NDArray[np.float64],
                 p1: npt.NDArray[np.float64]) -> int | None:
    """Index of the first hit after a one-sided Bernoulli CUSUM (p0 -> p1 per case) last left
    zero before its maximum; None when the statistic never rises."""
    if hits.size == 0:
        return None
    llr = np.where(hits, np.log(p1 / p0), np.log((1 - p1) / (1 - p0)))
    cum = np.concatenate([[0.0], np.cumsum(llr)])
    stat = cum - np.minimum.accumulate(cum)
    top = int(np.argmax(stat))
    if stat[top] <= 0:
        return None
    low = cum[: top + 1]
    start = int(np.flatnonzero(low == low.min())[-1])
    after = np.flatnonzero(hits[start:top])
    return start + int(after[0]) if after.size else None


@dataclass(frozen=True)
class Shift:
    """Recent hits against what the baseline predicts for cases of the same ages."""

    recent_hits: int
    recent_n: int
    baseline_hits: int
    baseline_n: int
    expected: float
    """Recent hits expected from the baseline at the recent cases' ages."""
    z: float
    since_hits: int = 0
    """Hits among the cases started since the change point (the recent window without one)."""
    since_cases: int = 0

    @property
    def since_share(self) -> float:
        return self.since_hits / self.since_cases if self.since_cases else 0.0

    @property
    def recent_share(self) -> float:
        return self.recent_hits / self.recent_n

    @property
    def baseline_share(self) -> float:
        return self.baseline_hits / self.baseline_n if self.baseline_n else 0.0

    def supported(self, s: ReworkSettings, minimum: int, fraction: float = 1.0) -> bool:
        """Minimum support: enough of the cases the sentence counts (started since) hit."""
        return (self.since_hits >= fraction * max(minimum, s.min_support_cases)
                and self.since_share >= fraction * s.min_support_share)

    def above(self, s: ReworkSettings, fraction: float = 1.0, z: float = MIN_Z,
              ratio: bool = True) -> bool:
        """Clearly above the age-adjusted baseline: ratio (unless ``ratio`` is False), increase
        and z guards all hold, each at ``fraction`` of its excess; and the share the sentence
        states (since) is above the baseline's, so it never says an increase that is not one."""
        times = 1 + fraction * (s.min_ratio - 1)
        return ((not ratio or self.recent_hits >= times * self.expected)
                and self.recent_hits >= self.expected + fraction * s.min_share_increase * self.recent_n
                and self.z >= z and self.since_share > self.baseline_share)

    def level(self, s: ReworkSettings, minimum: int, new: bool = False,
              ratio: bool = True) -> bool | None:
        """True: the shift opens an alert; False: it only holds one open (above the clearing
        thresholds, ``clear_z`` and ``clear_fraction``: hysteresis); None: neither. ``new``: a
        subject the baseline never had, which needs only the support."""
        f = s.clear_fraction
        if self.supported(s, minimum) and (new or self.above(s, ratio=ratio)):
            return True
        if self.supported(s, minimum, f) and (new or self.above(s, f, s.clear_z, ratio)):
            return False
        return None

    def evidence(self) -> dict[str, Any]:
        return {"since_cases_hit": self.since_hits, "since_cases": self.since_cases,
                "recent_cases_hit": self.recent_hits, "recent_share": self.recent_share,
                "baseline_cases_hit": self.baseline_hits, "baseline_share": self.baseline_share,
                "expected_share_at_same_age": self.expected / self.recent_n,
                "z": round(self.z, 2)}


@dataclass(frozen=True)
class Windows:
    """The cases in scope in start order (recent and baseline) and their completions."""

    cases: pl.DataFrame  # case_id, start (UTC), recent (bool), sorted by start
    basis: pl.DataFrame  # the completions (or all events) of those cases, in case order
    everything: pl.DataFrame  # the completions (or all events) of every case, up to now
    starts: pl.DataFrame  # case_id, start (UTC), day (local date) of every case, by start
    lifecycle: str | None
    now: datetime
    recent_start: datetime
    baseline_start: datetime
    calendar: WorkCalendar
    settings: ReworkSettings
    baseline_end: datetime
    """The baseline's end: the recent window's start, or an anchor's day."""

    @property
    def recent_n(self) -> int:
        return int(self.cases["recent"].sum())

    @property
    def baseline_n(self) -> int:
        return self.cases.height - self.recent_n

    def events(self, recent: bool) -> Events:
        """The scoped events of the recent (or baseline) cases, still in case order."""
        ids = self.cases.filter(pl.col("recent") == recent)["case_id"]
        return Events(self.basis.filter(pl.col("case_id").is_in(ids.implode())), self.lifecycle)

    def since(self, day: date) -> pl.DataFrame:
        """Every case started on ``day`` (local) or later, up to now: case_id, start, day."""
        return self.starts.filter(pl.col("day") >= day)

    def events_of(self, cases: pl.DataFrame) -> Events:
        """The scoped events of some cases (a frame with case_id)."""
        return Events(self.everything.join(cases.select("case_id"), on="case_id", how="semi"),
                      self.lifecycle)

    def measure(self, hits: pl.DataFrame) -> tuple[Shift, date, tuple[str, ...]]:
        """The shift of one subject's hits (case_id, hit time), its since and recent case ids."""
        table = self.cases.join(hits, on="case_id", how="left", maintain_order="left")
        start = table["start"].dt.epoch("us").to_numpy()
        hit_at = table["hit"].dt.epoch("us").to_numpy(allow_copy=True)
        hit = ~np.isnan(hit_at.astype(np.float64))
        recent = table["recent"].to_numpy()
        n_base, n_recent = int((~recent).sum()), int(recent.sum())
        delays = np.sort((hit_at[hit & ~recent] - start[hit & ~recent]).astype(np.float64))
        ages = (_us(self.now) - start).astype(np.float64)
        p0 = np.searchsorted(delays, ages, side="right") / max(n_base, 1)
        p0 = np.where(recent, p0, delays.size / max(n_base, 1))
        expected = float(p0[recent].sum())
        # the spread of a share the baseline never showed is that of half a case in it, not 0:
        # z stays a finite figure (never Infinity in the evidence) and large when it should be
        pv = np.clip(p0, 0.5 / max(n_base, 1), 1 - 0.5 / max(n_base, 1))
        spread = float((pv * (1 - pv))[recent].sum())
        spread += float(np.sqrt(pv * (1 - pv) / max(n_base, 1))[recent].sum()) ** 2
        observed = int((hit & recent).sum())
        z = (observed - expected) / math.sqrt(spread) if spread > 0 else 0.0
        index = self._change(hit, p0, observed / max(expected, 1.0))
        if index is not None:  # once more, with the shift seen after that first estimate
            seen = float(hit[index:].sum()) / max(float(p0[index:].sum()), 1.0)
            index = self._change(hit, p0, seen)
        since = self.calendar.business_day_of(
            self.recent_start if index is None else table["start"][index])
        midnight = datetime.combine(since, time(0), tzinfo=ZoneInfo(self.calendar.timezone))
        first = int(np.searchsorted(start, _us(midnight)))  # every case started that day on
        shift = Shift(observed, n_recent, int((hit & ~recent).sum()), n_base, expected, z,
                      since_hits=int(hit[first:].sum()), since_cases=int(hit.size - first))
        ids = table[first:].filter(pl.col("hit").is_not_null())["case_id"]
        return shift, since, tuple(sorted(ids)[:MAX_CASES_LISTED])

    def _change(self, hit: npt.NDArray[np.bool_], p0: npt.NDArray[np.float64],
                ratio: float) -> int | None:
        """The CUSUM change point against p1 = p0 x ratio (at least the smallest firing shift)."""
        s = self.settings
        floor = np.maximum(p0, 0.5 / max(self.baseline_n, 1))
        ratio = max(s.min_ratio, ratio)
        p1 = np.minimum(np.maximum(floor * ratio, floor + s.min_share_increase), 0.99)
        return change_point(hit, np.minimum(floor, 0.98), p1)

    def window_evidence(self) -> dict[str, Any]:
        s = self.settings
        return {"recent": {"from": self.recent_start.isoformat(), "to": self.now.isoformat(),
                           "cases": self.recent_n, "length": s.recent},
                "baseline": {"from": self.baseline_start.isoformat(),
                             "to": self.baseline_end.isoformat(), "cases": self.baseline_n,
                             "length": s.baseline}}


def _us(moment: datetime) -> int:
    return to_time_us(utc(moment))


def midnight(calendar: WorkCalendar, day: date) -> datetime:
    """The start of ``day`` in the calendar's time zone."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(calendar.timezone))


def baseline_span(calendar: WorkCalendar, now: datetime, s: ReworkSettings,
                  anchor: BaselineAnchor | None = None) -> tuple[datetime, datetime, datetime]:
    """The recent window's start and the baseline's start and end: the sliding ones, the
    ``baseline`` before a frozen anchor's onset, or an accepted anchor's span; never reaching
    into the recent window."""
    recent_start = window_start(calendar, now, parse_duration(s.recent))
    end = recent_start
    if anchor is not None:
        end = min(end, midnight(calendar, anchor.until))
    start = (window_start(calendar, end, parse_duration(s.baseline))
             if anchor is None or anchor.start is None else midnight(calendar, anchor.start))
    return recent_start, start, end


def case_windows(ctx: RuleContext, s: ReworkSettings,
                 anchor: BaselineAnchor | None = None) -> Windows | None:
    """The cases in scope of one process at ``ctx.now`` (None when there are none)."""
    calendar = ctx.process.calendar
    recent_start, baseline_start, baseline_end = baseline_span(calendar, ctx.now, s, anchor)
    basis = rework_basis(ctx.events)
    df = basis.df.filter(pl.col("timestamp") <= utc(ctx.now))
    starts = (df.group_by("case_id").agg(pl.col("timestamp").min().alias("start"))
              .filter((pl.col("start") >= utc(baseline_start))
                      & ((pl.col("start") < utc(baseline_end))
                         | (pl.col("start") >= utc(recent_start))))
              .with_columns((pl.col("start") >= utc(recent_start)).alias("recent"))
              .sort(["start", "case_id"]))
    if starts.is_empty():
        return None
    scoped = df.filter(pl.col("case_id").is_in(starts["case_id"].implode()))
    every = (df.group_by("case_id").agg(pl.col("timestamp").min().alias("start"))
             .with_columns(pl.col("start").dt.convert_time_zone(calendar.timezone).dt.date()
                           .alias("day"))
             .sort(["start", "case_id"]))
    return Windows(starts, scoped, df, every, basis.lifecycle, ctx.now, recent_start,
                   baseline_start, calendar, s, baseline_end)
