"""Tests for the change-point detector: CUSUM onset, frozen baseline, two-sample test, guards."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from alerts.changepoint import DriftSettings, cusum, detect, mann_whitney_greater

START = date(2026, 1, 5)  # a Monday
WORKDAYS = [START + timedelta(days=d) for d in range(500) if (START + timedelta(days=d)).weekday() < 5]


def series(seed: int, days: int, per_day: float = 20, onset: int | None = None, factor: float = 5.0,
           until: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Log-normal waits (median 0.75 business days) on working days; from working day ``onset``
    (to ``until``) they are ``factor`` times as long."""
    rng = np.random.default_rng(seed)
    out_days: list[date] = []
    values: list[float] = []
    for i, day in enumerate(WORKDAYS[:days]):
        n = int(rng.poisson(per_day))
        slow = onset is not None and i >= onset and (until is None or i < until)
        out_days += [day] * n
        values += list(rng.lognormal(np.log(0.75), 0.75, n) * (factor if slow else 1.0))
    return np.array(out_days, dtype="datetime64[D]"), np.array(values)


def settings(today_index: int, recent: int = 10, baseline_days: int = 60) -> DriftSettings:
    """The default thresholds (2x, +1 business day, 20 cases) with today a given working day."""
    today = WORKDAYS[today_index]
    return DriftSettings(today=today, recent_from=WORKDAYS[today_index - recent + 1],
                         baseline_days=baseline_days, min_cases=20, min_ratio=2.0, min_increase=1.0)


@pytest.mark.parametrize("seed", range(5))
def test_step_change_is_found_with_its_onset(seed: int) -> None:
    """A five-fold slowdown is confirmed, dated to its first day (give or take one working day),
    with both windows' figures."""
    days, values = series(seed, 140, onset=120)
    drift = detect(days, values, settings(139))
    assert drift is not None
    assert abs(np.busday_count(WORKDAYS[120], drift.onset)) <= 1
    assert 0.5 < drift.baseline.median < 1.0 and drift.recent.median > 3.0
    assert drift.ratio > 3.5 and drift.p_value < 1e-10
    assert drift.baseline.n >= 20 and drift.recent.n == len(drift.recent_index) >= 20


@pytest.mark.parametrize("per_day", [3, 20])
def test_noise_never_fires_over_a_year_of_daily_evaluations(per_day: int) -> None:
    """Stationary waits evaluated every working day of a year, ten series: no drift at all."""
    fired = []
    for seed in range(10):
        days, values = series(100 + seed, 260, per_day=per_day)
        for t in range(45, 260, 3):
            seen = days <= np.datetime64(WORKDAYS[t])
            if detect(days[seen], values[seen], settings(t)) is not None:
                fired.append((seed, t))
    assert fired == []


def test_small_shift_is_significant_but_not_large_enough() -> None:
    """A 30% slowdown on many cases passes the test at 1% but not the practical-size guard."""
    days, values = series(7, 160, per_day=40, onset=120, factor=1.3)
    assert cusum(days, values, settings(159)).onset is not None  # the CUSUM sees it...
    assert detect(days, values, settings(159)) is None  # ...but it is no bottleneck


def test_drift_that_ended_is_not_reported() -> None:
    """A slowdown that lasted three weeks and ended a month ago gives nothing now."""
    days, values = series(3, 170, onset=120, until=135)
    assert detect(days, values, settings(134)) is not None  # while it lasted (later days unseen)
    assert detect(days, values, settings(169)) is None


def test_old_drift_keeps_its_onset_against_the_frozen_baseline() -> None:
    """A slowdown older than the baseline window is still measured against the work before it,
    and still dated to its onset (the baseline does not drift up with it)."""
    days, values = series(4, 200, onset=120)
    drift = detect(days, values, settings(199))  # 80 working days later, baseline 60 days
    assert drift is not None and abs(np.busday_count(WORKDAYS[120], drift.onset)) <= 1
    assert drift.baseline.median < 1.0


def test_too_few_cases_say_nothing() -> None:
    """With fewer recent waits than min_cases, even a big slowdown is not reported yet."""
    days, values = series(5, 124, per_day=4, onset=121)
    assert detect(days, values, settings(123)) is None


def test_short_waits_at_the_start_of_the_data_are_no_baseline() -> None:
    """Only short waits can complete in the first days of the data; with ``elapsed`` those are
    left out, so a history that starts there does not look like a slowdown later."""
    days, values = series(6, 90)
    elapsed = np.array([(d.astype(object) - START).days * 5 / 7 for d in days])
    censored = values <= elapsed  # what could have completed by then
    found = detect(days[censored], values[censored], settings(89), elapsed[censored])
    assert found is None


def test_mann_whitney_matches_scipy_asymptotic() -> None:
    """The vectorised one-sided U test gives scipy's p-value, ties included."""
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.2, 0.6):
        base = np.round(rng.lognormal(0, 1, 60), 1)
        recent = np.round(rng.lognormal(shift, 1, 45), 1)
        expected = mannwhitneyu(recent, base, alternative="greater", method="asymptotic").pvalue
        assert mann_whitney_greater(recent, base) == pytest.approx(expected, rel=1e-9)


def test_a_drift_short_of_its_firing_size_holds_at_the_clearing_level() -> None:
    """A 1.9-fold slowdown does not reach the firing size (twice as long on the median and the
    p90) but is above the clearing size (1.8 times): with hysteresis it is returned as holding
    (opens False), without it not at all; a five-fold one opens."""
    days, values = series(3, 140, onset=110, factor=1.9)
    hold = dataclasses.replace(settings(139), min_increase=0.6, clear_fraction=0.8,
                               clear_alpha=0.05)
    strict = dataclasses.replace(hold, clear_fraction=1.0, clear_alpha=0.01)
    held = detect(days, values, hold)
    assert held is not None and not held.opens and held.ratio >= 1.8
    assert detect(days, values, strict) is None
    fast_days, fast = series(3, 140, onset=110, factor=5.0)
    opened = detect(fast_days, fast, hold)
    assert opened is not None and opened.opens
