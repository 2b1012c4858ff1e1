"""Rework (self-loop, loop, repeat, redo) and DFG loops on hand-built cases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

import mining
from mining import Loop, Rework
from mining.read_model import ReadModel
from mining.rework import rework_share
from schemas.event import CaseEvent, to_time_us

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def frame(cases: dict[str, Sequence[tuple[str, str | None]]]) -> pl.DataFrame:
    """One event per (activity, resource), an hour apart within each case, all complete."""
    return mining.frame_from_rows(
        {
            "case_id": case,
            "activity": activity,
            "resource": resource,
            "timestamp": T0 + timedelta(hours=i),
        }
        for case, steps in cases.items()
        for i, (activity, resource) in enumerate(steps)
    )


LOG = {
    "r1": [("a", "u1"), ("a", "u1"), ("b", "u2")],  # a again right away, same person
    "r2": [("a", "u1"), ("b", "u2"), ("a", "u3")],  # a again after b, someone else
    "r3": [("a", "u1"), ("b", "u2"), ("c", "u2"), ("a", None)],  # a again, resource unknown
    "r4": [("b", "u2"), ("a", "u1"), ("b", "u2")],  # b again after a, same person
    "r5": [("a", "u1"), ("b", "u2"), ("c", "u3")],  # no rework
    "r6": [("a", "u1"), ("a", "u2"), ("a", "u1")],  # a three times, each by another person
}


def test_rework_figures_per_activity() -> None:
    """Self-loops, loops, repeats and redos are counted in cases, per activity."""
    assert mining.discover_rework(frame(LOG)) == [
        Rework("a", cases=4, share=4 / 6, self_loop_cases=2, loop_cases=2,
               repeat_cases=1, redo_cases=2),
        Rework("b", cases=1, share=1 / 6, self_loop_cases=0, loop_cases=1,
               repeat_cases=1, redo_cases=0),
    ]  # fmt: skip


def test_loops_found_with_case_counts() -> None:
    """Every cycle of the DFG is found with the cases that go round it, in any rotation."""
    assert mining.discover_loops(frame(LOG)) == [
        Loop(("a",), 2),  # r1, r6
        Loop(("a", "b"), 2),  # r2 (a b a) and r4 (b a b)
        Loop(("a", "b", "c"), 1),  # r3 (a b c a); r5 has a b c but does not close
    ]


def test_no_rework_gives_empty_lists() -> None:
    """A log without any activity done twice has no rework and no loops."""
    df = frame({"x": [("a", "u"), ("b", "u"), ("c", "u")], "y": [("a", "u"), ("c", "u")]})
    assert mining.discover_rework(df) == []
    assert mining.discover_loops(df) == []
    assert mining.discover_rework(mining.empty_frame()) == []
    assert mining.discover_loops(mining.empty_frame()) == []


def test_start_and_complete_of_one_execution_are_not_rework() -> None:
    """schedule/start/complete of one execution is neither a self-loop nor a loop."""
    rows = [
        {"case_id": "c", "activity": a, "lifecycle": lc, "timestamp": T0 + timedelta(minutes=i)}
        for i, (a, lc) in enumerate(
            [
                ("a", "schedule"),
                ("a", "start"),
                ("a", "complete"),
                ("b", "start"),
                ("b", "complete"),
            ]
        )
    ]
    df = mining.frame_from_rows(rows)
    assert mining.discover_dfg(df).counts()[("a", "a")] == 2  # the DFG shows every transition
    assert mining.discover_rework(df) == []
    assert mining.discover_loops(df) == []
    # an explicit lifecycle is honoured; a log of starts only is counted as it is
    starts = df.filter(pl.col("lifecycle") == "start")
    assert mining.discover_rework(starts) == []
    assert mining.rework_basis(df, "start").df.height == 2


def test_rework_follows_arrival_order_on_ties() -> None:
    """With equal timestamps, seq decides whether a repeat is direct (self-loop) or not."""

    def events(order: list[tuple[str, int]]) -> pl.DataFrame:
        return mining.frame_from_rows(
            {"case_id": "c", "activity": a, "timestamp": T0, "seq": seq, "resource": "u"} for a, seq in order
        )

    (loop,) = mining.discover_rework(events([("a", 0), ("b", 1), ("a", 2)]))
    assert (loop.loop_cases, loop.self_loop_cases) == (1, 0)
    (direct,) = mining.discover_rework(events([("a", 0), ("b", 2), ("a", 1)]))
    assert (direct.loop_cases, direct.self_loop_cases) == (0, 1)


def test_loop_length_and_count_caps() -> None:
    """Cycles longer than max_length are not enumerated; at most max_loops are reported."""
    ring = [(x, "u") for x in "abcdefa"]  # a six-activity cycle
    df = frame({"long": ring, "s1": [("p", "u"), ("p", "u")], "s2": [("q", "u"), ("q", "u")]})
    assert Loop(tuple("abcdef"), 1) not in mining.discover_loops(df)
    assert Loop(tuple("abcdef"), 1) in mining.discover_loops(df, max_length=6)
    assert mining.discover_loops(df, max_loops=1) == [Loop(("p",), 1)]


@pytest.mark.parametrize("name", ["self_loop_cases", "loop_cases", "repeat_cases", "redo_cases"])
def test_rework_parts_never_exceed_cases(name: str) -> None:
    """Each kind of rework counts at most the cases with rework of that activity."""
    for row in mining.discover_rework(frame(LOG)):
        assert getattr(row, name) <= row.cases


def test_rework_share_counts_completions_alike_in_the_batch_and_the_read_models() -> None:
    """An activity started and completed once is no rework, one completed twice is: the
    read models' share of cases with rework (the overview's) is the batch's, 1 case of 2."""
    steps = {"once": [("a", "start"), ("a", "complete"), ("b", "complete")],
             "twice": [("a", "start"), ("a", "complete"), ("a", "start"), ("a", "complete")]}
    rows = [(case, i, activity, lifecycle) for case, case_steps in steps.items()
            for i, (activity, lifecycle) in enumerate(case_steps)]
    events = [CaseEvent(f"{case}-{i}", "p", case, activity, to_time_us(T0 + timedelta(hours=i)),
                        lifecycle) for case, i, activity, lifecycle in rows]
    figures = ReadModel("p").update(events).figures()
    assert rework_share(figures.rework_cases, figures.cases) == 0.5
    assert {a: r.cases for a, r in figures.rework.items()} == {"a": 1}
    batch = mining.discover_rework(mining.frame_from_rows(
        {"case_id": case, "activity": activity, "lifecycle": lifecycle,
         "timestamp": T0 + timedelta(hours=i)} for case, i, activity, lifecycle in rows))
    assert [(r.activity, r.cases, r.share) for r in batch] == [("a", 1, 0.5)]
