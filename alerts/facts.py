"""The derived tables the data-driven rules share, in business time: waits, cases, open cases.

Built once per evaluation (``RuleContext.facts``) from the process's events up to "now":

- ``waits``: one row per directly-follows transition completed by now, per case: ``case_id``,
  ``source``, ``target``, ``source_team``, ``target_team``, ``started_at`` (the source event),
  ``ended_at`` (the target event), ``started_day`` and ``ended_day`` (their local dates in the
  calendar's time zone),
  ``wait_s`` (business seconds between them), ``elapsed_s`` (business seconds from the first
  event of the data to ``ended_at``) and one ``segment_column(key)`` per segment key, the target
  event's attribute value as text (null when absent).
- ``cases``: one row per case: ``case_id``, ``started_at``, ``last_at``, ``last_day``,
  ``last_activity``, ``last_team``, ``events``, ``closed`` (the last activity is an end
  activity), ``duration_s`` (business seconds first -> last event), ``elapsed_s`` (business
  seconds from the first event of the data to ``last_at``) and the segment columns of the last
  event.
- ``open_cases``: the cases not closed, with ``idle_s``: business seconds from their last event
  to now (their current step is ``last_activity``).

Events after "now" are left out, so replayed or simulated history can be evaluated at any
moment. Where the events have ``start`` and ``complete`` lifecycles only completions count (as
``mining.rework.rework_basis`` does): a wait runs from one step's completion to the next's.
End activities come from the process definition; when it names none they are learned from the
data with ``alerts.registry.learn_end_activities`` (``end_activities_learned`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt
import polars as pl

from alerts.calendar import WorkCalendar, to_us
from alerts.registry import learn_end_activities
from mining.frame import Events
from mining.rework import rework_basis

_SEGMENT_PREFIX = "segment:"


_DAY_US = 86_400_000_000


def _local_day(local_us: npt.NDArray[np.int64]) -> pl.Series:
    """Local wall-clock microseconds as their local dates."""
    return pl.Series(np.floor_divide(local_us, _DAY_US).astype("datetime64[D]"), dtype=pl.Date)


def segment_column(key: str) -> str:
    """The column holding attribute ``key`` in ``Facts.waits`` and ``Facts.cases``."""
    return _SEGMENT_PREFIX + key


def _attribute(key: str) -> pl.Expr:
    """The attribute ``key`` of the JSON ``attributes`` column, as text (null when absent)."""
    escaped = key.replace("\\", "\\\\").replace("'", "\\'")
    return pl.col("attributes").str.json_path_match(f"$['{escaped}']").alias(segment_column(key))


@dataclass(frozen=True, eq=False)
class Facts:
    """Waits, cases and open cases of one process at one moment, computed once each."""

    basis: pl.DataFrame
    """The events counted (completions where there are lifecycles), up to now, ordered."""
    calendar: WorkCalendar
    now: datetime
    end_activities: tuple[str, ...]
    end_activities_learned: bool
    segment_keys: tuple[str, ...]

    @classmethod
    def build(cls, events: Events, calendar: WorkCalendar, now: datetime,
              end_activities: tuple[str, ...] = (),
              segment_keys: tuple[str, ...] = ()) -> Facts:
        """Facts of ``events`` as they stood at ``now`` (aware)."""
        basis = rework_basis(events).df
        basis = basis.filter(pl.col("timestamp").dt.epoch("us") <= to_us(now))
        learned = not end_activities
        if learned:
            end_activities = learn_end_activities(events, now=now)
        keys = tuple(dict.fromkeys(segment_keys))
        return cls(basis, calendar, now, tuple(end_activities), learned, keys)

    @cached_property
    def _moments_us(self) -> npt.NDArray[np.int64]:
        """The basis's timestamps, UTC microseconds."""
        return self.basis["timestamp"].dt.epoch("us").to_numpy().astype(np.int64)

    @cached_property
    def _local_us(self) -> npt.NDArray[np.int64]:
        """The basis's timestamps on the calendar's local wall clock, converted once: a wait
        ends where the next one starts, and most of the cost of business time is this."""
        return self.calendar.local_us(self._moments_us)

    @cached_property
    def data_start_us(self) -> int | None:
        """The first event's time (UTC microseconds), None without events."""
        if self.basis.is_empty():
            return None
        return int(self._moments_us.min())

    def _business(self, start: pl.Series, end: pl.Series) -> pl.Series:
        seconds = self.calendar.business_seconds(
            start.dt.epoch("us").to_numpy().astype(np.int64),
            end.dt.epoch("us").to_numpy().astype(np.int64))
        return pl.Series(seconds, dtype=pl.Float64)

    def _elapsed(self, end: pl.Series) -> pl.Series:
        start = np.full(end.len(), self.data_start_us or 0, dtype=np.int64)
        return pl.Series(self.calendar.business_seconds(
            start, end.dt.epoch("us").to_numpy().astype(np.int64)), dtype=pl.Float64)

    def _day(self, column: str) -> pl.Expr:
        return pl.col(column).dt.convert_time_zone(self.calendar.timezone).dt.date()

    @cached_property
    def waits(self) -> pl.DataFrame:
        """One row per completed directly-follows transition (see the module docstring)."""
        same = pl.col("case_id") == pl.col("case_id").shift(-1)
        table = (
            self.basis.with_columns(*(_attribute(k) for k in self.segment_keys))
            .select(
                pl.col("case_id"),
                pl.col("activity").alias("source"),
                pl.col("activity").shift(-1).alias("target"),
                pl.col("team").alias("source_team"),
                pl.col("team").shift(-1).alias("target_team"),
                pl.col("timestamp").alias("started_at"),
                pl.col("timestamp").shift(-1).alias("ended_at"),
                *(pl.col(segment_column(k)).shift(-1) for k in self.segment_keys),
                pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"),
                same.fill_null(False).alias("_same"),
            )
            .filter(pl.col("_same"))
            .drop("_same")
        )
        rows = table["_row"].to_numpy()
        moments, local = self._moments_us, self._local_us
        start_us, end_us = moments[rows], moments[rows + 1]
        local_a, local_b = local[rows], local[rows + 1]
        first = int(np.argmin(moments)) if moments.size else 0
        origin = np.full(rows.size, self.data_start_us or 0, dtype=np.int64)
        origin_local = np.full(rows.size, local[first] if moments.size else 0, dtype=np.int64)
        business = self.calendar.business_seconds
        return table.drop("_row").with_columns(
            _local_day(local_a).alias("started_day"),
            _local_day(local_b).alias("ended_day"),
            pl.Series("wait_s", business(start_us, end_us, local=(local_a, local_b)),
                      dtype=pl.Float64),
            pl.Series("elapsed_s", business(origin, end_us, local=(origin_local, local_b)),
                      dtype=pl.Float64),
        )

    @cached_property
    def cases(self) -> pl.DataFrame:
        """One row per case (see the module docstring)."""
        table = (
            self.basis.with_columns(*(_attribute(k) for k in self.segment_keys))
            .group_by("case_id", maintain_order=True)
            .agg(
                pl.col("timestamp").first().alias("started_at"),
                pl.col("timestamp").last().alias("last_at"),
                pl.col("activity").last().alias("last_activity"),
                pl.col("team").last().alias("last_team"),
                pl.len().alias("events"),
                *(pl.col(segment_column(k)).last() for k in self.segment_keys),
            )
        )
        return table.with_columns(
            self._day("last_at").alias("last_day"),
            pl.col("last_activity").is_in(list(self.end_activities)).alias("closed"),
            self._business(table["started_at"], table["last_at"]).alias("duration_s"),
            self._elapsed(table["last_at"]).alias("elapsed_s"),
        )

    @cached_property
    def open_cases(self) -> pl.DataFrame:
        """The cases not closed, with ``idle_s`` business seconds since their last event."""
        table = self.cases.filter(~pl.col("closed"))
        last = table["last_at"].dt.epoch("us").to_numpy().astype(np.int64)
        idle = self.calendar.business_seconds(last, np.full(last.size, to_us(self.now)))
        return table.with_columns(pl.Series("idle_s", idle, dtype=pl.Float64))
