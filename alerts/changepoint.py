"""Change-point detection for waiting and throughput times: CUSUM for the onset, a two-sample test
and a practical-size guard to confirm.

Method (one series = the samples of one wait or duration, each dated by the day it completed):

1. **Daily statistic.** For each day with samples, the median of ``log(value)`` (values in
   business days). Logs make "x times longer" an additive shift and tame the long right tail of
   waiting times; the median ignores the odd extreme case.
2. **Robust reference, frozen during a run.** On a day with no run in progress the reference is
   the median of the daily statistics of the ``baseline_days`` before it and their spread
   ``1.4826 * MAD`` (normal-consistent, floored at ``SIGMA_FLOOR``); at least
   ``MIN_REFERENCE_DAYS`` days and ``min_cases`` samples are needed before anything is counted.
   While a run is in progress the reference stays frozen at its first day's, so a drift never
   drags its own baseline up: a slowdown keeps being measured against the work before it, until
   the statistic is back to normal or the drift is older than ``horizon_days`` (then its level
   has become the new normal). Rules hold no state; this is how the baseline stays "frozen"
   without a person having to accept a new normal.
3. **One-sided upper CUSUM** on the standardized statistic ``z``:
   ``S_d = min(max(0, S_{d-1} + z_d - k), CAP * h)`` with ``k = 0.5`` and ``h = 5``. When a run
   reaches h, a one-sided Mann-Whitney U test between the run's samples and the reference
   window's must back it at ``alpha``; a run not backed within ``CONFIRM_DAYS`` days, or whose
   last ``CONFIRM_DAYS`` days averaged less than one standard deviation (2k) above the
   reference, is dropped and the reference moves on (an unlucky reference cannot freeze for
   good, and that test, run on days picked for being high, is no proof on its own). The cap
   lets S return to zero within days once a drift ends. A drift is *current* when the run still in
   progress on the last day was backed. Its **onset**: the maximum-likelihood change point
   within the run (``_shift_point``), which is the run's first day unless noise started the run
   early.
4. **Confirmation now.** Baseline samples: completed in ``[onset - baseline_days, onset)``;
   recent samples: completed from ``max(onset, recent_from)`` to today. Both need
   ``min_cases``. The one-sided Mann-Whitney p-value must be below ``alpha`` (0.01), and the
   **practical size** must be there: the recent median and p90 at least ``min_ratio`` times the
   baseline's *and* at least ``min_increase`` longer. **Hysteresis**: short of that, a drift
   still at ``clear_fraction`` (0.8) of the practical size (1.8 times and 0.8 business days
   longer, by default) and backed at ``clear_alpha`` (0.05) is returned with ``opens`` False:
   it keeps an open alert open and never opens one, so a drift near its threshold (helpdesk's
   wait before Resolve ticket, which fired, cleared for a week, fired again) stays one episode.
   Where the recent window holds fewer than ``min_cases`` samples, the clearing level takes the
   latest ``min_cases`` since the onset (helpdesk: 6 waits in the ten days after the onset's
   22, all still slow).

False alarms. A one-sided CUSUM with k = 0.5 and h = 5 on a standard normal statistic has an
in-control average run length of about 930 days: over a year and a few hundred series it
crosses by chance now and then, so the CUSUM only *dates* a change. What fires is the
conjunction with the two-sample test at 1% and the practical-size guard (default: twice as long
*and* one business day longer, on the median and on the p90). On a healthy process the median of
20 or more log-normal waits doubles only at about 3 standard errors, its p90 would have to
double too, and the CUSUM must have been climbing: noise alone practically never meets all of
it (clean simulated years of each process, two seeds, evaluated weekly by all three drift rules,
217 evaluations, gave no finding when this was written).
Dating by completion biases two stretches: the first days of the data (only short waits can
have completed yet), handled by leaving out samples completed less than ``p95(value)`` after
the data's start (``warm_up``); and a period when new work stops arriving (only the long waits
are still completing), which looks like a slowdown and is for the ``no_events`` rule and people.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

K: Final = 0.5
"""CUSUM allowance, in standard deviations of the daily statistic."""
H: Final = 5.0
"""CUSUM decision threshold, in standard deviations."""
ALPHA: Final = 0.01
SIGMA_FLOOR: Final = 0.05
"""Smallest spread of the daily log statistic (5%): a near-constant series is not hair-trigger."""
MIN_REFERENCE_DAYS: Final = 20
"""Days with samples needed in the reference window before the CUSUM starts counting."""
CAP: Final = 2.0
"""The CUSUM score is capped at CAP * h, so it returns to zero within days once a drift ends."""
CONFIRM_DAYS: Final = 10
"""A run the two-sample test has not backed within this many days (with samples) is dropped,
and so is a backed one whose last this-many days averaged less than 2k above the reference."""
HORIZON_DAYS: Final = 180
"""How old a drift may be (calendar days) and still be measured against the level before it."""
FLOOR_DAYS: Final = 1e-4
"""Values are floored here (about 3 business seconds) before taking logs."""

Days = npt.NDArray[np.datetime64]
Values = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DriftSettings:
    """What a series is compared over and how big a change must be to count."""

    today: date
    """The local day of "now"."""
    recent_from: date
    """First day of the recent window (the window runs to today)."""
    baseline_days: int
    """Calendar days of baseline before the onset (or before the recent window)."""
    min_cases: int
    min_ratio: float
    min_increase: float
    """In the values' unit (business days)."""
    alpha: float = ALPHA
    k: float = K
    h: float = H
    horizon_days: int = HORIZON_DAYS
    baseline_from: date | None = None
    """When set (an accepted level, ``alerts.anchors``), the baseline of a change at an onset
    is every sample from this day up to the onset, instead of ``baseline_days`` before it."""
    clear_fraction: float = 1.0
    """Hysteresis: a drift below its firing level but above this fraction of it (of
    ``min_ratio``'s excess over 1 and of ``min_increase``), backed at ``clear_alpha``, holds an
    open alert (``Drift.opens`` False); 1 means no hysteresis."""
    clear_alpha: float = ALPHA

    def clearing(self) -> DriftSettings:
        """The settings of the clearing level: ``min_ratio``, ``min_increase`` and ``alpha``
        relaxed as ``clear_fraction`` and ``clear_alpha`` say."""
        f = self.clear_fraction
        return dataclasses.replace(self, min_ratio=1 + f * (self.min_ratio - 1),
                                   min_increase=f * self.min_increase,
                                   alpha=max(self.alpha, self.clear_alpha))


@dataclass(frozen=True)
class Sample:
    """Robust figures of one window: size and p10 / median / p90 (business days)."""

    n: int
    p10: float
    median: float
    p90: float

    @classmethod
    def of(cls, values: Values) -> Sample:
        """The figures of some values (at least one)."""
        p10, median, p90 = np.quantile(values, [0.1, 0.5, 0.9])
        return cls(int(values.size), float(p10), float(median), float(p90))


@dataclass(frozen=True)
class Drift:
    """A confirmed upward change: since when, against what, how sure."""

    onset: date
    baseline: Sample
    recent: Sample
    p_value: float
    recent_index: npt.NDArray[np.intp]
    """Positions (in the input arrays) of the recent samples."""
    opens: bool = True
    """False: only at the clearing level (``DriftSettings.clearing``): it holds an open alert
    and never opens one."""

    @property
    def ratio(self) -> float:
        """Recent median over baseline median."""
        return self.recent.median / max(self.baseline.median, FLOOR_DAYS)


@dataclass(frozen=True)
class Cusum:
    """The CUSUM path over the days that had samples, and the current alarm if any."""

    days: Days
    statistic: Values
    score: Values
    onset: date | None
    """The change point of the run in progress on the last day, once the test backed it."""


def warm_up(values: Values, elapsed: Values) -> npt.NDArray[np.bool_]:
    """Samples to keep: completed at least the series' p95 value after the data started
    (``elapsed``, same unit), when waits of every usual length could have completed."""
    if values.size == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(elapsed >= np.quantile(values, 0.95))


def cusum(days: Days, values: Values, settings: DriftSettings) -> Cusum:
    """The one-sided upper CUSUM of the daily median log value, with a frozen reference."""
    order = np.lexsort((values, days))
    days, logs = days[order], np.log(np.maximum(values[order], FLOOR_DAYS))
    unique, starts, counts = np.unique(days, return_index=True, return_counts=True)
    stat = (logs[starts + (counts - 1) // 2] + logs[starts + counts // 2]) / 2
    lows = np.searchsorted(unique, unique - np.timedelta64(settings.baseline_days, "D"))
    levels, spreads = _references(stat, lows)
    cum = np.concatenate(([0], np.cumsum(counts)))
    ready = ((np.arange(stat.size) - lows >= MIN_REFERENCE_DAYS)
             & (cum[:-1] - cum[lows] >= settings.min_cases)).tolist()
    stats, score = stat.tolist(), [0.0] * stat.size
    level = spread = 0.0
    s, run, ref_lo, confirmed = 0.0, -1, 0, False
    zs: list[float] = []
    for i in range(stat.size):
        if s == 0.0:
            if not ready[i]:
                continue
            level, spread, ref_lo = float(levels[i]), float(spreads[i]), int(lows[i])
        z = (stats[i] - level) / spread
        s = min(max(0.0, s + z - settings.k), CAP * settings.h)
        if s > 0.0 and run < 0:
            run, confirmed, zs = i, False, []
        if run >= 0:
            zs.append(z)
        if s >= settings.h and not confirmed:
            before = logs[starts[ref_lo]:starts[run]]
            since = logs[starts[run]:starts[i] + counts[i]]
            confirmed = _shifted(since, before, settings.alpha)
        if len(zs) >= CONFIRM_DAYS and (not confirmed or _faded(zs, settings.k)):
            s = 0.0  # not backed by the test, or no longer clearly up: the reference moves on
        if s == 0.0:
            run = -1
        score[i] = s
    path = np.array(score)
    if not confirmed or run < 0:
        return Cusum(unique, stat, path, None)
    start = run + _shift_point((stat[run:] - level) / spread, settings.k)
    return Cusum(unique, stat, path, unique[start].astype(object))


def _faded(zs: list[float], k: float) -> bool:
    """A run whose last CONFIRM_DAYS days averaged less than 2k (one standard deviation) above
    the reference is over: a drift that holds stays well above it."""
    return sum(zs[-CONFIRM_DAYS:]) < 2 * k * CONFIRM_DAYS


def _shift_point(z: Values, k: float) -> int:
    """Where in a CUSUM run the level jumped (0 = the run's first day): the maximum-likelihood
    change point for a shift of the run's median size (at least 2k), i.e. the position after
    the minimum of the cumulative sum of ``z - shift / 2``, moved back over the days just
    before it that were already a standard deviation high. Those are the first days after an
    onset, only partly slow: the statistic is dated by completion, and work queued before the
    onset still completes then."""
    half = max(float(np.median(z)), 2 * k) / 2
    walk = np.concatenate(([0.0], np.cumsum(z - half)))
    start = int(np.argmin(walk[:-1]))
    while start > 0 and z[start - 1] >= 1.0:
        start -= 1
    return start


def _references(stat: Values, lows: npt.NDArray[np.intp]) -> tuple[Values, Values]:
    """For each day i, the median and 1.4826 * MAD (floored) of ``stat[lows[i]:i]``."""
    sizes = np.arange(stat.size) - lows
    width = int(sizes.max(initial=0))
    if width == 0:
        return np.zeros(stat.size), np.full(stat.size, SIGMA_FLOOR)
    index = lows[:, None] + np.arange(width)[None, :]
    inside = index < np.arange(stat.size)[:, None]
    window = np.where(inside, stat[np.minimum(index, stat.size - 1)], np.inf)
    level = _row_medians(window, sizes)
    spread = 1.4826 * _row_medians(np.where(inside, np.abs(window - level[:, None]), np.inf), sizes)
    return level, np.maximum(spread, SIGMA_FLOOR)


def _row_medians(rows: Values, sizes: npt.NDArray[np.intp]) -> Values:
    """The median of the first ``sizes[i]`` values of each row once sorted (the padding is
    +inf, so it sorts last); 0 for an empty row."""
    ordered = np.sort(rows, axis=1)
    at, last = np.arange(rows.shape[0]), rows.shape[1] - 1
    lo = np.clip((sizes - 1) // 2, 0, last)
    hi = np.clip(sizes // 2, 0, last)
    medians = (ordered[at, lo] + ordered[at, hi]) / 2
    return np.where(sizes > 0, medians, 0.0)


def mann_whitney_greater(recent: Values, base: Values) -> float:
    """One-sided Mann-Whitney U p-value that ``recent`` is stochastically larger than ``base``:
    the normal approximation with tie and continuity corrections, as scipy's
    ``mannwhitneyu(recent, base, alternative="greater", method="asymptotic")``, in numpy."""
    n1, n2 = recent.size, base.size
    n = n1 + n2
    pooled = np.sort(np.concatenate((recent, base)))
    # a value's mid-rank: (first position + last position + 2) / 2, 1-based
    ranks = (np.searchsorted(pooled, recent, "left") + np.searchsorted(pooled, recent, "right")
             + 1) / 2.0
    u = float(ranks.sum()) - n1 * (n1 + 1) / 2.0
    edges = np.flatnonzero(np.concatenate(([True], pooled[1:] != pooled[:-1], [True])))
    counts = np.diff(edges)
    ties = float((counts.astype(np.float64) ** 3 - counts).sum())
    variance = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _shifted(recent: Values, base: Values, alpha: float) -> bool:
    """The recent values are significantly larger than the base ones (one-sided, at alpha)."""
    if recent.size < 3 or base.size < 3:
        return False
    return mann_whitney_greater(recent, base) < alpha


def current_onset(days: Days, values: Values, settings: DriftSettings,
                  elapsed: Values | None = None) -> tuple[date, npt.NDArray[np.intp]] | None:
    """The onset of the series' current, backed CUSUM run (steps 1-3 of the method), with the
    positions of the samples it looked at; None when there is no such run."""
    if values.size < 2 * settings.min_cases:
        return None
    index = in_scope(days, values, settings, elapsed)
    found = cusum(days[index], values[index], settings)
    return None if found.onset is None else (found.onset, index)


def in_scope(days: Days, values: Values, settings: DriftSettings,
             elapsed: Values | None = None) -> npt.NDArray[np.intp]:
    """Positions of the samples the method looks at: completed in the lookback
    (``baseline_days + horizon_days`` before today, up to today) and past the ``warm_up``."""
    oldest = settings.today - timedelta(days=settings.baseline_days + settings.horizon_days)
    keep = (days >= np.datetime64(oldest)) & (days <= np.datetime64(settings.today))
    if elapsed is not None:
        keep &= warm_up(values, elapsed)
    return np.flatnonzero(keep)


def onset_up_to(days: Days, values: Values, settings: DriftSettings, until: date) -> date | None:
    """The onset of the backed CUSUM run in progress on ``until``, over the samples dated up to
    it (steps 1-3 of the method on a series cut there), or None. For re-dating a drift on a
    series whose latest days are not complete yet (see ``alerts.rules.throughput``)."""
    keep = days <= np.datetime64(until)
    return cusum(days[keep], values[keep], settings).onset


def compare(base: Values, recent: Values, settings: DriftSettings) -> tuple[Sample, Sample, float] | None:
    """Step 4: the baseline and recent figures and the p-value, when both windows have
    ``min_cases``, the practical size is there and the one-sided test backs it at ``alpha``."""
    if base.size < settings.min_cases or recent.size < settings.min_cases:
        return None
    b, r = Sample.of(base), Sample.of(recent)
    if not _large_enough(b, r, settings):
        return None
    p_value = mann_whitney_greater(recent, base)
    return None if p_value >= settings.alpha else (b, r, p_value)


def baseline_of(days: Days, onset: date, settings: DriftSettings) -> npt.NDArray[np.bool_]:
    """Which samples are the baseline of a change at ``onset``: ``[onset - baseline_days, onset)``
    (``[baseline_from, onset)`` when that is set)."""
    first = settings.baseline_from or onset - timedelta(days=settings.baseline_days)
    before = np.datetime64(first)
    return np.asarray((days >= before) & (days < np.datetime64(onset)))


def detect(days: Days, values: Values, settings: DriftSettings,
           elapsed: Values | None = None) -> Drift | None:
    """A current, confirmed upward drift of the series, or None (see the module docstring).

    ``days``: the local day each sample completed (``datetime64[D]``; days after today and
    before the lookback of ``baseline_days + horizon_days`` are ignored);
    ``values``: the samples, in business days; ``elapsed``: business days from the start of
    the data to each sample's completion (for ``warm_up``), None when the data start far back.
    """
    found = current_onset(days, values, settings, elapsed)
    return None if found is None else confirm(days, values, settings, *found)


def confirm(days: Days, values: Values, settings: DriftSettings, onset: date,
            index: npt.NDArray[np.intp]) -> Drift | None:
    """Step 4 of the method for a run ``current_onset`` found (``onset``, ``index``): the
    drift, when the baseline and recent windows bear it out; ``detect`` is both steps."""
    base_at = index[baseline_of(days[index], onset, settings)]
    recent_at = index[days[index] >= np.datetime64(max(onset, settings.recent_from))]
    compared = compare(values[base_at], values[recent_at], settings)
    if compared is not None:
        return Drift(onset, *compared, recent_at)
    if settings.clear_fraction >= 1 and settings.clear_alpha <= settings.alpha:
        return None
    if recent_at.size < settings.min_cases:  # a thin recent window: the latest since the onset
        since = index[days[index] >= np.datetime64(onset)]
        recent_at = since[np.argsort(days[since], kind="stable")][-settings.min_cases:]
    held = compare(values[base_at], values[recent_at], settings.clearing())
    return None if held is None else Drift(onset, *held, recent_at, opens=False)


def _large_enough(base: Sample, recent: Sample, settings: DriftSettings) -> bool:
    """The practical-size guard: median and p90 both min_ratio times and min_increase longer."""
    return all(now >= settings.min_ratio * then and now >= then + settings.min_increase
               for then, now in ((base.median, recent.median), (base.p90, recent.p90)))
