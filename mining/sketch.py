"""`QuantileSketch`: a mergeable, removable quantile sketch of durations with a stated error.

The read models keep waits and durations as sketches rather than as every value: a window is
the sum of its buckets' sketches, and a case that gets one more event after it was counted is
taken out and counted again. So the sketch must merge (add another sketch) and remove (take a
value out), exactly, whatever the order.

It is DDSketch's idea (Masson, Rim and Lee, VLDB 2019) on non-negative integer microseconds,
kept to what the read models need, without a new dependency: a positive value v goes to the
bucket ``ceil(log(v) / log(gamma))`` with ``gamma = (1 + alpha) / (1 - alpha)``, and a bucket
stands for ``2 * gamma**i / (gamma + 1)``; zero has its own exact count. Buckets are counts, so
merging adds them and removing subtracts: the result never depends on the order of updates.

Which figure is exact and which approximate:
- ``count``, ``total_us`` and so ``mean_s`` are exact;
- ``quantile_s(q)`` (median, p90) is within a relative ``alpha`` (default 1%) of the exact
  quantile with linear interpolation between order statistics (numpy's default, what
  `mining.stats` computes): each of the two order statistics it interpolates is within alpha,
  and so is any convex combination of them;
- ``count_at_most_s(x)`` (how many met a limit) is exact but for values within a relative
  ``alpha`` of ``x``, which may be counted on either side;
- ``max_s`` is within a relative ``alpha`` of the exact maximum (a bucket does not keep which
  of its values was largest, so a removed maximum could not be replaced exactly).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final, Self

DEFAULT_ALPHA: Final = 0.01
_US: Final = 1_000_000


class QuantileSketch:
    """Counts of non-negative microsecond values in logarithmic buckets; see the module."""

    __slots__ = ("_bins", "_count", "_gamma", "_log_gamma", "_total", "_zeros", "alpha")

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha {alpha} must be between 0 and 1")
        self.alpha = alpha
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._log_gamma = math.log(self._gamma)
        self._bins: dict[int, int] = {}
        self._zeros = 0
        self._count = 0
        self._total = 0

    # -- updates --
    def add(self, value_us: int, times: int = 1) -> Self:
        """Count a value (whole microseconds, not negative) `times` times; negative times
        removes. Removing a value never added raises ValueError and changes nothing."""
        if value_us < 0:
            raise ValueError(f"a duration cannot be negative: {value_us} us")
        if value_us == 0:
            if self._zeros + times < 0:
                raise ValueError("removing a zero the sketch does not hold")
            self._zeros += times
        else:
            key = self._key(value_us)
            held = self._bins.get(key, 0) + times
            if held < 0:
                raise ValueError(f"removing {value_us} us, which the sketch does not hold")
            if held:
                self._bins[key] = held
            else:
                self._bins.pop(key, None)
        self._count += times
        self._total += value_us * times
        return self

    def remove(self, value_us: int, times: int = 1) -> Self:
        """Take a value out, as if it had never been added."""
        return self.add(value_us, -times)

    def update(self, values_us: Iterable[int]) -> Self:
        """Count each value once."""
        for value in values_us:
            self.add(value)
        return self

    def merge(self, other: QuantileSketch, sign: int = 1) -> Self:
        """Add (sign 1) or subtract (sign -1) another sketch of the same alpha. Subtracting
        what this sketch does not contain raises ValueError and changes nothing."""
        if other.alpha != self.alpha:
            raise ValueError(f"cannot merge sketches of alpha {self.alpha} and {other.alpha}")
        if sign < 0 and (other._zeros > self._zeros or any(
                n > self._bins.get(key, 0) for key, n in other._bins.items())):
            raise ValueError("subtracting a sketch this one does not contain")
        for key, n in other._bins.items():
            held = self._bins.get(key, 0) + sign * n
            if held:
                self._bins[key] = held
            else:
                del self._bins[key]
        self._zeros += sign * other._zeros
        self._count += sign * other._count
        self._total += sign * other._total
        return self

    def copy(self) -> QuantileSketch:
        """An independent sketch with the same counts."""
        twin = QuantileSketch(self.alpha)
        return twin.merge(self)

    # -- results --
    @property
    def count(self) -> int:
        """How many values it holds (exact)."""
        return self._count

    @property
    def total_us(self) -> int:
        """Their sum in microseconds (exact)."""
        return self._total

    @property
    def mean_s(self) -> float:
        """Their mean in seconds (exact up to float division); 0.0 when empty."""
        return self._total / self._count / _US if self._count else 0.0

    @property
    def bins(self) -> Mapping[int, int]:
        """Bucket index -> count of positive values (what a store persists); zeros apart."""
        return dict(self._bins)

    @property
    def zeros(self) -> int:
        """How many zero values it holds."""
        return self._zeros

    @property
    def max_s(self) -> float:
        """The largest value in seconds, within a relative alpha; 0.0 when empty."""
        if not self._bins:
            return 0.0
        return self._value(max(self._bins)) / _US

    def count_at_most_s(self, seconds: float) -> int:
        """How many values are at most ``seconds``: exact but for values within a relative
        alpha of it (a bucket counts whole when what it stands for is at most ``seconds``)."""
        if seconds < 0:
            return 0
        limit = seconds * _US
        return self._zeros + sum(n for key, n in self._bins.items() if self._value(key) <= limit)

    def quantile_s(self, q: float) -> float:
        """The q-quantile in seconds, linear between order statistics, within a relative alpha
        of the exact one; 0.0 when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} must be between 0 and 1")
        if not self._count:
            return 0.0
        rank = q * (self._count - 1)
        low = math.floor(rank)
        below, above = self._at(low), self._at(min(low + 1, self._count - 1))
        return (below + (rank - low) * (above - below)) / _US

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return (self.alpha, self._zeros, self._count, self._total, self._bins) == (
            other.alpha, other._zeros, other._count, other._total, other._bins)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"QuantileSketch(alpha={self.alpha}, count={self._count}, bins={len(self._bins)})"

    @classmethod
    def restore(cls, alpha: float, zeros: int, bins: Mapping[int, int], total_us: int) -> QuantileSketch:
        """A sketch from what `bins`, `zeros` and `total_us` returned (as a store keeps it)."""
        sketch = cls(alpha)
        sketch._bins = {int(k): int(v) for k, v in bins.items() if v}
        sketch._zeros = int(zeros)
        sketch._count = sketch._zeros + sum(sketch._bins.values())
        sketch._total = int(total_us)
        return sketch

    # -- inside --
    def _key(self, value_us: int) -> int:
        """The bucket of a positive value."""
        return math.ceil(math.log(value_us) / self._log_gamma)

    def _value(self, key: int) -> float:
        """What a bucket stands for: within alpha of every value it holds."""
        return 2.0 * self._gamma**key / (self._gamma + 1.0)

    def _at(self, rank: int) -> float:
        """The estimate of the value at 0-based rank `rank` in ascending order (microseconds)."""
        if rank < self._zeros:
            return 0.0
        seen = self._zeros
        for key in sorted(self._bins):
            seen += self._bins[key]
            if rank < seen:
                return self._value(key)
        raise AssertionError("rank beyond the sketch's count")  # pragma: no cover
