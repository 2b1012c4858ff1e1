"""The one place the mining core imports pm4py: explicit keys, pandas frames, MiningError."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import polars as pl

from mining.errors import MiningError, Pm4pyError
from mining.frame import check_frame, ordered

KEYS = {"activity_key": "activity", "case_id_key": "case_id", "timestamp_key": "timestamp"}


def to_pandas(df: pl.DataFrame) -> Any:
    """A checked event frame as a pandas DataFrame ordered by (case_id, timestamp, seq)."""
    # Not arrival order: pm4py's start/end activities, variants and case durations read each
    # case's rows in frame order and get_variants assumes a case's rows are contiguous; on
    # interleaved cases (live arrival order) it mixes them. Its DFG re-sorts stably: no change.
    return ordered(check_frame(df)).to_pandas()


def _call(name: str, df: pl.DataFrame, **kwargs: Any) -> Any:
    """Call pm4py.`name` on the frame with our column keys; pm4py failures become MiningError."""
    frame = to_pandas(df)  # a fresh copy: pm4py adds columns to the frames it is given
    try:
        pm4py = importlib.import_module("pm4py")  # imported lazily: slow, and prints a banner
        function: Callable[..., Any] = getattr(pm4py, name)
        return function(frame, **KEYS, **kwargs)
    except MiningError:
        raise
    except Exception as exc:
        raise Pm4pyError(f"pm4py.{name} failed: {type(exc).__name__}: {exc}") from exc


def discover_dfg(
    df: pl.DataFrame,
) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
    """pm4py.discover_dfg: (edge counts, start activities, end activities)."""
    result: tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]] = _call("discover_dfg", df)
    return result


def discover_performance_dfg(df: pl.DataFrame) -> dict[tuple[str, str], dict[str, float]]:
    """pm4py.discover_performance_dfg: per edge {mean, median, max, min, sum, stdev} seconds."""
    perf: dict[tuple[str, str], dict[str, float]] = _call("discover_performance_dfg", df)[0]
    return perf


def get_variants(df: pl.DataFrame) -> dict[tuple[str, ...], int]:
    """pm4py.get_variants: activity tuple -> number of cases."""
    variants: dict[tuple[str, ...], int] = _call("get_variants", df)
    return variants


def get_all_case_durations(df: pl.DataFrame) -> list[float]:
    """pm4py.get_all_case_durations: sorted case durations in seconds."""
    durations: list[float] = _call("get_all_case_durations", df)
    return durations
