"""The event frame: validation, canonical ordering and consecutive-event pairs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Final

import polars as pl

from mining.errors import FrameError

UTC_US: Final = pl.Datetime("us", "UTC")
SCHEMA: Final[dict[str, pl.DataType]] = {
    "event_id": pl.String(),
    "case_id": pl.String(),
    "activity": pl.String(),
    "timestamp": UTC_US,
    "lifecycle": pl.String(),
    "resource": pl.String(),
    "team": pl.String(),
    "attributes": pl.String(),
    "seq": pl.Int64(),
}
NULLABLE: Final = frozenset({"resource", "team", "attributes"})
LIFECYCLES: Final = ("start", "complete", "schedule")
ORDER: Final = ("case_id", "timestamp", "seq")


def _same_type(actual: pl.DataType, expected: pl.DataType) -> bool:
    """True when `actual` is `expected`, time unit and time zone included."""
    if isinstance(expected, pl.Datetime):
        return (
            isinstance(actual, pl.Datetime)
            and actual.time_unit == expected.time_unit
            and actual.time_zone == expected.time_zone
        )
    return actual == expected


def empty_frame() -> pl.DataFrame:
    """An event frame with the expected columns and no rows."""
    return pl.DataFrame(schema=SCHEMA)


def check_frame(df: object) -> pl.DataFrame:
    """Validate an event frame and return it with exactly the expected columns, in order."""
    if not isinstance(df, pl.DataFrame):
        raise FrameError(f"expected a polars DataFrame, got {type(df).__name__}")
    casts: list[pl.Expr] = []
    for name, expected in SCHEMA.items():
        if name not in df.columns:
            raise FrameError(f"missing column {name!r}")
        actual = df.schema[name]
        if name in NULLABLE and actual == pl.Null:
            casts.append(pl.col(name).cast(expected))
        elif not _same_type(actual, expected):
            raise FrameError(f"column {name!r} has type {actual}, expected {expected}")
    out = df.select(list(SCHEMA)).with_columns(casts)
    required = [name for name in SCHEMA if name not in NULLABLE]
    nulls = out.select(pl.col(required).null_count()).row(0, named=True)
    for name in required:
        if nulls[name]:
            raise FrameError(f"column {name!r} has {nulls[name]} null value(s)")
    bad = out.filter(~pl.col("lifecycle").is_in(LIFECYCLES))["lifecycle"]
    if bad.len():
        raise FrameError(f"column 'lifecycle' has invalid value {bad[0]!r}; allowed: {LIFECYCLES}")
    if out["seq"].n_unique() != out.height:
        raise FrameError("column 'seq' has duplicate values; arrival order must be strict")
    return out


def ordered(df: pl.DataFrame, lifecycle: str | None = None) -> pl.DataFrame:
    """Sort a checked frame by (case_id, timestamp, seq), optionally keeping one lifecycle."""
    if lifecycle is not None:
        if lifecycle not in LIFECYCLES:
            raise FrameError(f"unknown lifecycle {lifecycle!r}; allowed: {LIFECYCLES}")
        df = df.filter(pl.col("lifecycle") == lifecycle)
    # seq is unique, so this is a total order: ties on timestamp keep arrival order.
    return df.sort(list(ORDER))


def steps_of(df: pl.DataFrame) -> pl.DataFrame:
    """Consecutive event pairs within each case of an ordered frame, with the wait in seconds."""
    nxt = pl.col("case_id").shift(-1)
    return (
        df.select(
            pl.col("case_id"),
            pl.col("activity").alias("source"),
            pl.col("activity").shift(-1).alias("target"),
            (
                (pl.col("timestamp").shift(-1) - pl.col("timestamp")).dt.total_microseconds() / 1e6
            ).alias("wait_s"),
            pl.col("resource"),
            pl.col("resource").shift(-1).alias("next_resource"),
            pl.col("team"),
            pl.col("team").shift(-1).alias("next_team"),
            (nxt == pl.col("case_id")).fill_null(False).alias("_same_case"),
        )
        .filter(pl.col("_same_case"))
        .drop("_same_case")
    )


@dataclass(frozen=True)
class Events:
    """A checked event frame ordered by (case_id, timestamp, seq), optionally of one lifecycle."""

    df: pl.DataFrame
    lifecycle: str | None = None

    @cached_property
    def steps(self) -> pl.DataFrame:
        """Consecutive event pairs within cases (see `steps_of`), computed once."""
        return steps_of(self.df)

    @cached_property
    def cases(self) -> int:
        """Number of distinct cases."""
        return int(self.df["case_id"].n_unique())


EventsLike = pl.DataFrame | Events


def prepare(data: EventsLike, lifecycle: str | None = None) -> Events:
    """Check and order a raw frame once; pass already prepared events through."""
    if isinstance(data, Events):
        if lifecycle is None or lifecycle == data.lifecycle:
            return data
        return Events(ordered(data.df, lifecycle), lifecycle)
    return Events(ordered(check_frame(data), lifecycle), lifecycle)
