"""QuantileSketch: its stated error bound, and merge/remove in any order equal a fresh count."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mining.sketch import QuantileSketch
from mining.stats import P90_INTERPOLATION

# Microsecond durations from zero to about 30 years, weighted towards the small ones.
durations = st.one_of(st.integers(0, 1_000), st.integers(0, 10**9), st.integers(0, 10**15))
samples = st.lists(durations, min_size=1, max_size=300)


def exact_s(values: list[int], q: float) -> float:
    """The exact quantile in seconds as the batch mining computes it (polars, linear)."""
    column = pl.Series(values, dtype=pl.Int64) / 1_000_000
    result = column.quantile(q, interpolation=P90_INTERPOLATION)
    assert result is not None
    return float(result)


def within(estimate: float, exact: float, alpha: float) -> bool:
    """Whether an estimate is within a relative alpha of the exact value (float slack)."""
    return abs(estimate - exact) <= alpha * exact * (1 + 1e-9) + 1e-12


@settings(max_examples=300, deadline=None)
@given(samples, st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), st.sampled_from([0.01, 0.05]))
def test_quantiles_are_within_the_stated_relative_error(values: list[int], q: float, alpha: float) -> None:
    """Median, p90 and the rest are within alpha of the exact linear quantile, max within alpha of the max."""
    sketch = QuantileSketch(alpha).update(values)
    assert within(sketch.quantile_s(q), exact_s(values, q), alpha)
    assert within(sketch.max_s, max(values) / 1_000_000, alpha)


@settings(max_examples=200, deadline=None)
@given(samples)
def test_count_sum_and_mean_are_exact(values: list[int]) -> None:
    """The count, the total and the mean are exact, not approximate."""
    sketch = QuantileSketch().update(values)
    assert sketch.count == len(values)
    assert sketch.total_us == sum(values)
    assert sketch.mean_s == pytest.approx(sum(values) / len(values) / 1_000_000, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(samples, samples, st.randoms(use_true_random=False))
def test_removing_and_merging_in_any_order_equals_counting_what_remains(
    kept: list[int], dropped: list[int], rnd: object
) -> None:
    """Adding everything in a shuffled order then removing some equals a sketch of only the rest."""
    import random

    assert isinstance(rnd, random.Random)
    both = kept + dropped
    rnd.shuffle(both)
    folded = QuantileSketch().update(both)
    for value in dropped:
        folded.remove(value)
    assert folded == QuantileSketch().update(kept)

    merged = QuantileSketch().update(kept).merge(QuantileSketch().update(dropped))
    assert merged == QuantileSketch().update(kept + dropped)
    assert merged.merge(QuantileSketch().update(dropped), sign=-1) == QuantileSketch().update(kept)


@settings(max_examples=100, deadline=None)
@given(samples)
def test_a_stored_sketch_restores_equal(values: list[int]) -> None:
    """What a store keeps (bins, zeros, total) gives back an equal sketch."""
    sketch = QuantileSketch().update(values)
    back = QuantileSketch.restore(sketch.alpha, sketch.zeros, sketch.bins, sketch.total_us)
    assert back == sketch
    assert back.quantile_s(0.5) == sketch.quantile_s(0.5)


def test_removing_what_was_never_added_is_refused_and_changes_nothing() -> None:
    """Taking out a value or a sketch the sketch does not hold raises and leaves it as it was."""
    sketch = QuantileSketch().update([0, 5_000_000, 7_000_000])
    before = sketch.copy()
    with pytest.raises(ValueError, match="does not hold"):
        sketch.remove(3_600_000_000)
    with pytest.raises(ValueError, match="does not hold"):
        sketch.remove(0, times=2)
    with pytest.raises(ValueError, match="does not contain"):
        sketch.merge(QuantileSketch().update([5_000_000, 9_000_000_000]), sign=-1)
    assert sketch == before


def test_bad_arguments_name_the_problem() -> None:
    """A negative duration, an alpha outside (0, 1), a quantile outside [0, 1] or mixed alphas are refused."""
    with pytest.raises(ValueError, match="negative"):
        QuantileSketch().add(-1)
    with pytest.raises(ValueError, match="alpha"):
        QuantileSketch(1.5)
    with pytest.raises(ValueError, match="quantile"):
        QuantileSketch().update([1]).quantile_s(1.5)
    with pytest.raises(ValueError, match="merge"):
        QuantileSketch(0.01).merge(QuantileSketch(0.02))


def test_an_empty_sketch_reads_as_zero() -> None:
    """An empty sketch has count 0 and reads 0.0 for its mean, quantiles and max, as the batch figures do."""
    sketch = QuantileSketch()
    assert (sketch.count, sketch.mean_s, sketch.quantile_s(0.5), sketch.max_s) == (0, 0.0, 0.0, 0.0)
