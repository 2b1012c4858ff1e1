"""Event frame checks, ordering and the directly-follows graph (against pm4py on random logs)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pm4py
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mining
from mining import _pm4py

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEYS = {"activity_key": "activity", "case_id_key": "case_id", "timestamp_key": "timestamp"}

Row = tuple[str, str, int] | tuple[str, str, int, str]


def frame(rows: Sequence[Row]) -> pl.DataFrame:
    """Events (case, activity, minute[, lifecycle]) in arrival order: seq is the row index."""
    return mining.frame_from_rows(
        {
            "case_id": r[0],
            "activity": r[1],
            "timestamp": T0 + timedelta(minutes=r[2]),
            "lifecycle": r[3] if len(r) > 3 else "complete",
        }
        for r in rows
    )


def test_check_frame_names_missing_column() -> None:
    """A frame without a required column is rejected with the column's name."""
    df = frame([("c1", "a", 0)]).drop("team")
    with pytest.raises(mining.MiningError, match="missing column 'team'"):
        mining.check_frame(df)


@pytest.mark.parametrize(
    ("column", "expr"),
    [
        ("timestamp", pl.col("timestamp").dt.replace_time_zone(None)),
        ("timestamp", pl.col("timestamp").dt.cast_time_unit("ns")),
        ("seq", pl.col("seq").cast(pl.Int32)),
        ("case_id", pl.col("case_id").cast(pl.Categorical)),
    ],
)
def test_check_frame_names_wrong_type(column: str, expr: pl.Expr) -> None:
    """A column of the wrong type (naive or ns timestamps, Int32 seq...) is named in the error."""
    df = frame([("c1", "a", 0)]).with_columns(expr.alias(column))
    with pytest.raises(mining.FrameError, match=f"column '{column}' has type"):
        mining.check_frame(df)


def test_check_frame_rejects_bad_values() -> None:
    """Nulls in required columns, unknown lifecycles and duplicate seq are rejected."""
    df = frame([("c1", "a", 0), ("c1", "b", 1)])
    with pytest.raises(mining.FrameError, match="'activity' has 1 null"):
        mining.check_frame(df.with_columns(activity=pl.Series([None, "b"], dtype=pl.String)))
    with pytest.raises(mining.FrameError, match="invalid value 'done'"):
        mining.check_frame(df.with_columns(pl.lit("done").alias("lifecycle")))
    with pytest.raises(mining.FrameError, match="'seq' has duplicate"):
        mining.check_frame(df.with_columns(pl.lit(7, pl.Int64).alias("seq")))
    with pytest.raises(mining.FrameError, match="polars DataFrame"):
        mining.check_frame(df.to_pandas())


def test_check_frame_keeps_only_known_columns_and_types_all_null() -> None:
    """Extra columns are dropped and all-null optional columns get the String type."""
    df = frame([("c1", "a", 0)]).with_columns(pl.lit(None).alias("team"), pl.lit(1).alias("extra"))
    checked = mining.check_frame(df)
    assert checked.columns == list(mining.SCHEMA)
    assert checked.schema["team"] == pl.String


def test_ordered_sorts_by_case_timestamp_seq_and_filters_lifecycle() -> None:
    """`ordered` sorts by (case_id, timestamp, seq) and can keep one lifecycle."""
    df = frame([("c2", "x", 0), ("c1", "b", 5), ("c1", "a", 1, "start"), ("c1", "a", 1)])
    out = mining.ordered(df)
    assert out.select("case_id", "activity", "seq").rows() == [
        ("c1", "a", 2),
        ("c1", "a", 3),
        ("c1", "b", 1),
        ("c2", "x", 0),
    ]
    assert mining.ordered(df, "start")["seq"].to_list() == [2]
    with pytest.raises(mining.FrameError, match="unknown lifecycle"):
        mining.ordered(df, "end")


def test_ties_keep_arrival_order() -> None:
    """Events of a case with the same timestamp follow each other in arrival (seq) order."""
    dfg = mining.discover_dfg(frame([("c1", "b", 0), ("c1", "a", 0), ("c1", "c", 0)]))
    assert dfg.counts() == {("b", "a"): 1, ("a", "c"): 1}
    assert dfg.start_activities == {"b": 1}
    assert dfg.end_activities == {"c": 1}


def test_empty_frame_gives_empty_graph() -> None:
    """An empty frame gives a graph with no edges and no start or end activities."""
    dfg = mining.discover_dfg(mining.empty_frame())
    assert dfg == mining.Dfg(edges=(), start_activities={}, end_activities={})


def test_unsorted_input_gives_the_same_result() -> None:
    """Shuffling the rows (seq unchanged) changes neither the DFG nor the summary."""
    rows: list[Row] = [
        ("c1", "a", 0), ("c1", "b", 3), ("c1", "b", 3), ("c1", "c", 9),
        ("c2", "a", 1), ("c2", "c", 2), ("c2", "b", 2), ("c3", "a", 4),
    ]  # fmt: skip
    df = frame(rows)
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=7)
    assert shuffled["seq"].to_list() != df["seq"].to_list()
    assert mining.discover_dfg(shuffled) == mining.discover_dfg(df)
    assert mining.summarize(shuffled, "p") == mining.summarize(df, "p")


def test_wait_stats_per_edge() -> None:
    """Waits of one edge give mean, median, p90 (linear interpolation) and max in seconds."""
    rows: list[Row] = []
    for i, minutes in enumerate([1, 2, 3, 4]):
        rows += [(f"c{i}", "a", 0), (f"c{i}", "b", minutes)]
    (edge,) = mining.discover_dfg(frame(rows)).edges
    assert (edge.source, edge.target, edge.count) == ("a", "b", 4)
    assert edge.wait == mining.WaitStats(mean=150.0, median=150.0, p90=222.0, max=240.0)


def test_edges_sorted_by_count_then_names() -> None:
    """Edges come by count desc, then source and target names."""
    df = frame([("c1", "b", 0), ("c1", "a", 1), ("c2", "a", 0), ("c2", "b", 1), ("c3", "a", 0),
                ("c3", "b", 1), ("c4", "z", 0), ("c4", "a", 1)])  # fmt: skip
    edges = [(e.source, e.target, e.count) for e in mining.discover_dfg(df).edges]
    assert edges == [("a", "b", 2), ("b", "a", 1), ("z", "a", 1)]


def test_lifecycle_filter_changes_the_graph() -> None:
    """With a lifecycle the graph uses only those events; without, every transition."""
    df = frame([("c1", "a", 0, "start"), ("c1", "a", 1), ("c1", "b", 2, "start"), ("c1", "b", 3)])
    assert mining.discover_dfg(df).counts() == {("a", "a"): 1, ("a", "b"): 1, ("b", "b"): 1}
    assert mining.discover_dfg(df, lifecycle="complete").counts() == {("a", "b"): 1}


def test_pm4py_adapter_matches_and_wraps_errors() -> None:
    """The pm4py adapter uses our column keys and turns pm4py failures into MiningError."""
    df = frame([("c1", "a", 0), ("c2", "a", 0), ("c1", "b", 1)])  # cases interleaved
    counts, start, end = _pm4py.discover_dfg(df)
    assert counts == mining.discover_dfg(df).counts()
    assert (start, end) == ({"a": 2}, {"b": 1, "a": 1})
    assert _pm4py.get_variants(df) == {("a", "b"): 1, ("a",): 1}
    with pytest.raises(mining.Pm4pyError, match=r"pm4py\.no_such_function failed"):
        _pm4py._call("no_such_function", df)


events = st.tuples(
    st.sampled_from(["c1", "c2", "c3", "c4"]),
    st.sampled_from(["a", "b", "c", "d"]),
    st.integers(min_value=0, max_value=5),  # few distinct minutes: many ties
    st.sampled_from(["start", "complete", "schedule"]),
)


def pm4py_frames(df: pl.DataFrame) -> tuple[Any, Any]:
    """Our frame for pm4py: in arrival order, and made chronological by format_dataframe."""
    raw = df.sort("seq").to_pandas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chrono = pm4py.format_dataframe(
            raw.copy(), case_id="case_id", activity_key="activity", timestamp_key="timestamp"
        )
    return raw, chrono


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=25))
def test_random_logs_dfg_equals_pm4py(rows: list[tuple[str, str, int, str]]) -> None:
    """On random small logs with ties, our DFG, waits and variants equal pm4py's."""
    df = frame(rows)
    ours = mining.discover_dfg(df)
    raw, chrono = pm4py_frames(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts, _, _ = pm4py.discover_dfg(raw.copy(), **KEYS)
        _, start, end = pm4py.discover_dfg(chrono.copy(), **KEYS)
        perf = pm4py.discover_performance_dfg(raw.copy(), **KEYS)[0] if counts else {}
        variants = pm4py.get_variants(chrono.copy(), **KEYS)
    assert ours.counts() == counts
    assert (ours.start_activities, ours.end_activities) == (start, end)
    for edge in ours.edges:
        theirs = perf[(edge.source, edge.target)]
        assert edge.wait.mean == pytest.approx(theirs["mean"], abs=1e-6)
        assert edge.wait.median == pytest.approx(theirs["median"], abs=1e-6)
    found = mining.discover_variants(df)
    assert {v.activities: v.count for v in found} == variants
    assert found == sorted(found, key=lambda v: (-v.count, v.activities))
