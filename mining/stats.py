"""Shared statistics helpers: waiting-time aggregations and rounding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import polars as pl

# p90 uses linear interpolation between order statistics (numpy's default percentile);
# pm4py offers no p90, so there is nothing to match. The median is the usual midpoint
# for an even count, as in pandas and pm4py.
P90_INTERPOLATION: Final = "linear"


@dataclass(frozen=True)
class WaitStats:
    """Waiting time in seconds between two consecutive events: mean, median, p90, max."""

    mean: float
    median: float
    p90: float
    max: float

    def as_dict(self, ndigits: int = 3) -> dict[str, float]:
        """Rounded JSON form."""
        return {
            "mean": round(self.mean, ndigits),
            "median": round(self.median, ndigits),
            "p90": round(self.p90, ndigits),
            "max": round(self.max, ndigits),
        }


def wait_aggs(col: str = "wait_s") -> list[pl.Expr]:
    """Aggregations producing the `WaitStats` fields from a seconds column."""
    c = pl.col(col)
    return [
        c.mean().alias("mean"),
        c.median().alias("median"),
        c.quantile(0.9, interpolation=P90_INTERPOLATION).alias("p90"),
        c.max().cast(pl.Float64).alias("max"),
    ]


def wait_stats(row: dict[str, Any]) -> WaitStats:
    """Build `WaitStats` from a row that holds the `wait_aggs` columns."""
    return WaitStats(mean=_f(row["mean"]), median=_f(row["median"]), p90=_f(row["p90"]), max=_f(row["max"]))


def _f(value: Any) -> float:
    """A plain float, 0.0 for a missing value."""
    return 0.0 if value is None else float(value)


def rounded(value: float, ndigits: int = 3) -> float:
    """A plain float rounded for JSON."""
    return round(float(value), ndigits)
