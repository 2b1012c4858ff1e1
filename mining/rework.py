"""Rework per activity (self-loops, loops, repeat, redo) and the DFG cycles cases go round."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final

import polars as pl

from mining.frame import Events, EventsLike, only, prepare

EXECUTION: Final = "complete"
"""The lifecycle of the events rework and loops count. They count executions, and an activity's
completion is one execution; otherwise the schedule -> start -> complete of a single execution
would look like a -> a -> a, a self-loop that is no rework. The batch (``rework_basis``) counts
every event of a frame without any completion, and an explicit ``lifecycle`` overrides it; the
read models (``mining.case_facts``) count completions, the same whenever a process has any."""
MAX_CYCLE_LENGTH: Final = 5  # longest cycle enumerated, in activities
MAX_ENUMERATED: Final = 10_000  # networkx enumeration budget, in cycles
MAX_LOOPS: Final = 50  # loops reported, the ones most cases go round


@dataclass(frozen=True)
class Rework:
    """How often an activity had to be done again within a case, counted in cases."""

    # Each execution is compared with the previous execution of the same activity in the
    # case: `self_loop` when it directly follows it (a -> a), `loop` when other work came in
    # between (a -> ... -> a); `repeat` when the same resource did both, `redo` when another
    # resource did (executions without a resource count as neither). `cases` counts cases with
    # any re-execution of the activity; `share` is that over all cases of the process.
    activity: str
    cases: int
    share: float
    self_loop_cases: int
    loop_cases: int
    repeat_cases: int
    redo_cases: int


@dataclass(frozen=True)
class Loop:
    """A simple cycle of the directly-follows graph and the number of cases that go round it."""

    cycle: tuple[str, ...]
    cases: int


def rework_basis(data: EventsLike, lifecycle: str | None = None) -> Events:
    """The events rework and loops count: `lifecycle` if given, else completions if any."""
    events = prepare(data)
    complete = (events.df["lifecycle"] == EXECUTION).any()
    if lifecycle is None and events.lifecycle is None and complete:
        lifecycle = EXECUTION
    return only(events, lifecycle)


def rework_share(rework_cases: int, cases: int) -> float | None:
    """The share of the cases with rework: ``rework_cases`` of ``cases`` had some activity (or
    the one activity counted) executed more than once, on the basis above. The overview's and
    the process page's share; None without cases."""
    return rework_cases / cases if cases else None


def _executions(basis: pl.DataFrame) -> pl.DataFrame:
    """Each execution that repeats an activity in its case, flagged the four ways."""
    same = (pl.col("case_id") == pl.col("case_id").shift(1)) & (
        pl.col("activity") == pl.col("activity").shift(1)
    )
    res, prev = pl.col("resource"), pl.col("prev_resource")
    known = res.is_not_null() & prev.is_not_null()
    return (
        basis.select("case_id", "activity", "resource", pl.int_range(pl.len()).alias("pos"))
        # a stable sort: within (case, activity) the executions stay in case order
        .sort(["case_id", "activity"], maintain_order=True)
        .with_columns(
            pl.when(same).then(pl.col("pos") - pl.col("pos").shift(1)).alias("gap"),
            pl.when(same).then(pl.col("resource").shift(1)).alias("prev_resource"),
        )
        .filter(pl.col("gap").is_not_null())
        .select(
            "case_id",
            "activity",
            (pl.col("gap") == 1).alias("self_loop"),
            (pl.col("gap") > 1).alias("loop"),
            (known & (res == prev)).alias("repeat"),
            (known & (res != prev)).alias("redo"),
        )
    )


def discover_rework(data: EventsLike, lifecycle: str | None = None) -> list[Rework]:
    """Activities done more than once in a case, sorted by cases desc, then activity."""
    events = prepare(data)
    flags = ["self_loop", "loop", "repeat", "redo"]
    per_case = (
        _executions(rework_basis(events, lifecycle).df)
        .group_by("case_id", "activity")
        .agg(pl.col(flags).any())
    )
    table = (
        per_case.group_by("activity")
        .agg(pl.len().alias("cases"), *(pl.col(f).sum().alias(f"{f}_cases") for f in flags))
        .sort(["cases", "activity"], descending=[True, False])
    )
    total = events.cases
    return [
        Rework(
            activity=row["activity"],
            cases=int(row["cases"]),
            share=row["cases"] / total,
            self_loop_cases=int(row["self_loop_cases"]),
            loop_cases=int(row["loop_cases"]),
            repeat_cases=int(row["repeat_cases"]),
            redo_cases=int(row["redo_cases"]),
        )
        for row in table.iter_rows(named=True)
    ]


def canonical(cycle: list[str]) -> tuple[str, ...]:
    """The rotation of a simple cycle that starts at its alphabetically first activity."""
    i = cycle.index(min(cycle))
    return tuple(cycle[i:] + cycle[:i])


def dfg_cycles(steps: pl.DataFrame, max_length: int = MAX_CYCLE_LENGTH) -> list[tuple[str, ...]]:
    """Simple cycles (self-loops included) up to `max_length`, at most MAX_ENUMERATED of them."""
    # networkx adds about 12 MiB to a fresh process: loaded here, when the events read from the
    # store are gone, not at start-up beside them
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_edges_from(steps.select("source", "target").unique().iter_rows())
    found = nx.simple_cycles(graph, length_bound=max_length)
    return sorted({canonical(list(c)) for c in itertools.islice(found, MAX_ENUMERATED)})


def _pairs(df: pl.DataFrame) -> pl.DataFrame:
    """The distinct (source, target) pairs of consecutive events within the cases of an ordered
    frame: the DFG's edges, without the consecutive-event pairs themselves (``Events.steps``,
    one row per pair with its wait and teams)."""
    same_case = (pl.col("case_id").shift(-1) == pl.col("case_id")).fill_null(False)
    return (
        df.lazy()
        .select(pl.col("activity").alias("source"), pl.col("activity").shift(-1).alias("target"),
                same_case.alias("_same_case"))
        .filter(pl.col("_same_case"))
        .select("source", "target")
        .unique()
        .collect()
    )


def discover_loops(
    data: EventsLike,
    lifecycle: str | None = None,
    max_length: int = MAX_CYCLE_LENGTH,
    max_loops: int = MAX_LOOPS,
) -> list[Loop]:
    """DFG cycles with the cases going round them, by cases desc; unvisited cycles left out."""
    # A case goes round a cycle c0 -> ... -> ck-1 when its trace holds one rotation of the
    # cycle's activities consecutively followed by that rotation's first activity again
    # (a -> a for a self-loop). Ties on cases: shorter cycles first, then by name.
    basis = rework_basis(data, lifecycle)
    cycles = dfg_cycles(_pairs(basis.df), max_length)
    if not cycles:
        return []
    codes = {a: i for i, a in enumerate(sorted({a for c in cycles for a in c}))}
    patterns = pl.DataFrame(
        [
            (",".join(str(codes[a]) for a in (c[r:] + c[:r] + (c[r],))), i)
            for i, c in enumerate(cycles)
            for r in range(len(c))
        ],
        schema={"key": pl.String, "cycle": pl.Int64},
        orient="row",
    )
    code = pl.col("activity").replace_strict(codes, default=None, return_dtype=pl.Int32)
    frame = basis.df.lazy().select("case_id", code.alias("c0"))
    hits = []
    for k in sorted({len(c) for c in cycles}):
        # a window of k + 1 events of one case that closes back on its first activity
        shifted = [pl.col("c0").shift(-j).alias(f"c{j}") for j in range(1, k + 1)]
        closes = (pl.col("case_id").shift(-k) == pl.col("case_id")) & (pl.col("c0") == pl.col(f"c{k}"))
        key = pl.concat_str([pl.col(f"c{j}") for j in range(k + 1)], separator=",")
        windows = frame.with_columns(shifted).filter(closes).select("case_id", key.alias("key"))
        hits.append(windows.join(patterns.lazy(), on="key").select("case_id", "cycle"))
    counted = pl.concat(hits).group_by("cycle").agg(pl.col("case_id").n_unique().alias("cases")).collect()
    loops = [Loop(cycles[i], int(n)) for i, n in counted.iter_rows()]
    loops.sort(key=lambda lp: (-lp.cases, len(lp.cycle), lp.cycle))
    return loops[:max_loops]
