"""The live DFG (mining.live) against the batch DFG and pm4py, under late, duplicate and compacted events."""

from __future__ import annotations

import gc
import json
import math
import random
import sys
import time
import tracemalloc
import warnings
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pm4py
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mining
from ingest.consumer import Subscriber
from ingest.simulate import simulate
from mining.errors import FrameError, LiveMergeError
from mining.live import LiveDfg
from mining.live_maps import LiveMaps
from schemas.event import CaseEvent, to_time_us

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = to_time_us(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
MIN = 60_000_000
DAY = 86_400_000_000
KEYS = {"activity_key": "activity", "case_id_key": "case_id", "timestamp_key": "timestamp"}


def ev(case: str, activity: str, minute: float, eid: str | None = None, *,
       process: str = "p", lifecycle: str = "complete") -> CaseEvent:
    """One event of `case` at T0 + `minute` minutes."""
    return CaseEvent(eid or f"{case}-{activity}-{minute}", process, case, activity,
                     T0 + round(minute * MIN), lifecycle)


def first_arrivals(stream: Iterable[CaseEvent]) -> list[CaseEvent]:
    """The stream without re-deliveries, in order of first arrival."""
    seen: dict[str, CaseEvent] = {}
    for e in stream:
        seen.setdefault(e.event_id, e)
    return list(seen.values())


def batch_frame(stream: Iterable[CaseEvent]) -> pl.DataFrame:
    """The deduplicated events as a frame whose seq is the order of first arrival."""
    return mining.frame_from_rows(
        {"event_id": e.event_id, "case_id": e.case_id, "activity": e.activity,
         "timestamp": EPOCH + timedelta(microseconds=e.time_us), "lifecycle": e.lifecycle,
         "seq": i}
        for i, e in enumerate(first_arrivals(stream)))


def assert_matches_batch(live: LiveDfg, stream: Sequence[CaseEvent], lifecycle: str | None = None) -> None:
    """Live counts, starts/ends, mean waits, events and cases equal mining.discover_dfg."""
    df = batch_frame(stream)
    if lifecycle is not None:
        df = df.filter(pl.col("lifecycle") == lifecycle)
    dfg = mining.discover_dfg(df)
    assert dict(live.edge_counts) == dfg.counts()
    assert dict(live.start_activities) == dfg.start_activities
    assert dict(live.end_activities) == dfg.end_activities
    means = live.mean_waits
    assert means.keys() == {(e.source, e.target) for e in dfg.edges}
    for edge in dfg.edges:
        assert math.isclose(means[(edge.source, edge.target)], edge.wait.mean, rel_tol=1e-9, abs_tol=1e-9)
    assert (live.events, live.cases) == (df.height, df["case_id"].n_unique())


def feed(live: LiveDfg, stream: Sequence[CaseEvent], sizes: Sequence[int]) -> LiveDfg:
    """Deliver the stream in consecutive batches of the given sizes (the rest in one batch)."""
    at = 0
    for size in sizes:
        live.update(stream[at:at + size])
        at += size
    return live.update(stream[at:])


@st.composite
def case_events(draw: st.DrawFn, cases: int = 4,
                lifecycles: Sequence[str] = ("complete",)) -> list[CaseEvent]:
    """A few cases over a small alphabet, times on a coarse grid (many ties)."""
    out = []
    for c in range(draw(st.integers(1, cases))):
        for j in range(draw(st.integers(1, 8))):
            out.append(CaseEvent(
                f"c{c}-{j}", "p", f"c{c}", draw(st.sampled_from("abcd")),
                T0 + draw(st.integers(0, 8)) * 37_000_001, draw(st.sampled_from(lifecycles))))
    return out


@st.composite
def shuffled_streams(draw: st.DrawFn, lifecycles: Sequence[str] = ("complete",)
                     ) -> tuple[list[CaseEvent], list[int]]:
    """Events in random order with re-deliveries anywhere after the first, and batch sizes."""
    stream = draw(st.permutations(draw(case_events(lifecycles=lifecycles))))
    for i, offset in draw(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99)), max_size=6)):
        i %= len(stream)
        stream.insert(i + 1 + offset % (len(stream) - i), stream[i])
    return stream, draw(st.lists(st.integers(0, 6), max_size=8))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shuffled_streams())
def test_shuffled_batches_with_duplicates_equal_batch(drawn: tuple[list[CaseEvent], list[int]]) -> None:
    """Any arrival order, batching and re-delivery gives exactly the batch DFG of the distinct events."""
    stream, sizes = drawn
    live = feed(LiveDfg("p"), stream, sizes)
    assert_matches_batch(live, stream)
    assert live.duplicates == len(stream) - len(first_arrivals(stream))
    assert live.open_cases == live.cases and live.compacted_cases == 0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shuffled_streams(lifecycles=("start", "complete")))
def test_lifecycle_filter_equals_batch_filter(drawn: tuple[list[CaseEvent], list[int]]) -> None:
    """With lifecycle='complete' the live DFG equals discover_dfg on the complete events only."""
    stream, sizes = drawn
    assert_matches_batch(feed(LiveDfg("p", lifecycle="complete"), stream, sizes), stream, "complete")


@st.composite
def resumed_streams(draw: st.DrawFn) -> tuple[list[CaseEvent], list[list[CaseEvent]]]:
    """Batches in time order across batches (ties random), shuffled and re-delivered inside each."""
    events = draw(st.permutations(draw(case_events(cases=5))))
    events.sort(key=lambda e: e.time_us)  # stable: ties stay in random order
    batches, at = [], 0
    while at < len(events):
        size = draw(st.integers(1, 6))
        chunk = events[at:at + size] + draw(st.lists(st.sampled_from(events[at:at + size]), max_size=2))
        batches.append(draw(st.permutations(chunk)))
        at += size
    return [e for b in batches for e in b], batches


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resumed_streams())
def test_compaction_and_reopening_stay_exact(drawn: tuple[list[CaseEvent], list[list[CaseEvent]]]) -> None:
    """Closing on 'd' and idling out cases keeps the batch result when later events sort after them."""
    stream, batches = drawn
    live = LiveDfg("p", end_activities={"d"}, idle_horizon=timedelta(minutes=1), retain=timedelta(days=1))
    for batch in batches:
        live.update(batch)
    assert_matches_batch(live, stream)
    assert live.skipped_events == 0
    assert live.open_cases + live.tombstones == live.cases


def halves(events: Iterable[CaseEvent]) -> tuple[list[CaseEvent], list[CaseEvent]]:
    """The events of the even-numbered cases, and those of the odd ones (disjoint cases)."""
    events = list(events)
    even = [e for e in events if int(e.case_id[1:]) % 2 == 0]
    return even, [e for e in events if int(e.case_id[1:]) % 2]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shuffled_streams(), st.integers(0, 99))
def test_merging_maps_fed_disjoint_cases_equals_one_map_fed_all(
        drawn: tuple[list[CaseEvent], list[int]], cut: int) -> None:
    """Two maps fed the cases split in two, merged, read as one map fed every event (and as the
    batch DFG); events after the merge keep it so; the map merged in is left as it was."""
    stream, sizes = drawn
    cut %= len(stream) + 1
    even, odd = halves(stream[:cut])
    left, right = feed(LiveDfg("p"), even, sizes), feed(LiveDfg("p"), odd, sizes)
    before = right.snapshot()
    merged = left.merge(right)
    assert merged is left
    feed(merged, stream[cut:], sizes)
    everything = feed(LiveDfg("p"), stream, sizes)
    assert_matches_batch(merged, stream)
    assert merged.snapshot() == everything.snapshot()
    assert right.snapshot() == before


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resumed_streams(), st.integers(0, 99))
def test_merging_compacted_maps_stays_exact(
        drawn: tuple[list[CaseEvent], list[list[CaseEvent]]], cut: int) -> None:
    """Maps that closed, idled out and remember cases, merged midway, take the later events as
    one map would: the batch DFG, nothing skipped, every case open or remembered."""
    stream, batches = drawn
    cut %= len(batches) + 1

    def new() -> LiveDfg:
        return LiveDfg("p", end_activities={"d"}, idle_horizon=timedelta(minutes=1),
                       retain=timedelta(days=1))

    left, right = new(), new()
    for batch in batches[:cut]:
        even, odd = halves(batch)
        left.update(even)
        right.update(odd)
    merged = left.merge(right)
    for batch in batches[cut:]:
        merged.update(batch)
    assert_matches_batch(merged, stream)
    assert merged.skipped_events == 0
    assert merged.open_cases + merged.tombstones == merged.cases


def test_maps_sharing_a_case_or_options_do_not_merge() -> None:
    """Merging maps fed the same case, or built with other options, or a map with itself, is
    refused (LiveMergeError) and leaves the map as it was."""
    left = LiveDfg("p").update([ev("c", "a", 0)])
    with pytest.raises(LiveMergeError, match="same cases"):
        left.merge(LiveDfg("p").update([ev("c", "b", 1)]))
    with pytest.raises(LiveMergeError, match="other options"):
        left.merge(LiveDfg("p", lifecycle="complete"))
    with pytest.raises(LiveMergeError, match="itself"):
        left.merge(left)
    assert (left.events, left.cases, dict(left.start_activities)) == (1, 1, {"a": 1})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shuffled_streams())
def test_live_equals_pm4py_discover_dfg(drawn: tuple[list[CaseEvent], list[int]]) -> None:
    """Live edge counts, start/end activities and mean waits equal pm4py's on the distinct events."""
    stream, sizes = drawn
    live = feed(LiveDfg("p"), stream, sizes)
    raw = batch_frame(stream).sort("seq").to_pandas()  # arrival order: pm4py's stable sort keeps ties
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts, _, _ = pm4py.discover_dfg(raw.copy(), **KEYS)
        chrono = pm4py.format_dataframe(raw.copy(), case_id="case_id", activity_key="activity",
                                        timestamp_key="timestamp")
        _, start, end = pm4py.discover_dfg(chrono, **KEYS)
        perf = pm4py.discover_performance_dfg(raw.copy(), **KEYS)[0] if counts else {}
    assert dict(live.edge_counts) == counts
    assert (dict(live.start_activities), dict(live.end_activities)) == (start, end)
    for pair, mean in live.mean_waits.items():
        assert mean == pytest.approx(perf[pair]["mean"], abs=1e-6)


def test_event_in_the_middle_retracts_the_split_edge() -> None:
    """A late event between two held events replaces their edge by two, with the right waits."""
    live = LiveDfg().update([ev("c", "a", 0), ev("c", "c", 10)]).update([ev("c", "b", 4)])
    assert dict(live.edge_counts) == {("a", "b"): 1, ("b", "c"): 1}
    assert dict(live.wait_sums_us) == {("a", "b"): 4 * MIN, ("b", "c"): 6 * MIN}
    assert live.late_events == 1


def test_event_before_the_first_moves_the_start() -> None:
    """A late event earlier than a case's first event becomes its start activity."""
    live = LiveDfg().update([ev("c", "b", 5), ev("c", "c", 6)]).update([ev("c", "a", 1)])
    assert dict(live.start_activities) == {"a": 1}
    assert dict(live.end_activities) == {"c": 1}
    assert dict(live.edge_counts) == {("a", "b"): 1, ("b", "c"): 1}


def test_tie_in_time_keeps_arrival_order() -> None:
    """Two events at the same time follow in arrival order, also across batches."""
    live = LiveDfg().update([ev("c", "a", 0), ev("c", "z", 5)]).update([ev("c", "y", 5)])
    assert dict(live.edge_counts) == {("a", "z"): 1, ("z", "y"): 1}
    assert live.late_events == 0


def test_closing_compacts_without_changing_counts() -> None:
    """Reaching an end activity drops the case's events but keeps its counts (and one tombstone)."""
    stream = [ev("c1", "a", 0), ev("c1", "b", 1), ev("c2", "a", 2), ev("c1", "end", 3)]
    live = LiveDfg(end_activities={"end"}).update(stream)
    assert_matches_batch(live, stream)
    assert (live.open_cases, live.tombstones, live.compacted_cases) == (1, 1, 1)


def test_closing_waits_for_the_end_of_the_batch() -> None:
    """An end activity followed in the same batch by an earlier event of its case stays exact."""
    stream = [ev("c", "a", 0), ev("c", "end", 5), ev("c", "b", 3)]
    live = LiveDfg(end_activities={"end"}).update(stream)
    assert_matches_batch(live, stream)
    assert (live.open_cases, live.compacted_cases) == (0, 1)


def test_idle_cases_are_compacted_by_the_watermark() -> None:
    """A case with no event for longer than idle_horizon of event time is compacted, counts kept."""
    live = LiveDfg(idle_horizon=timedelta(days=30))
    stream = [ev("old", "a", 0), ev("old", "b", 1), ev("new", "a", 30 * 24 * 60)]
    live.update(stream)
    assert live.open_cases == 2  # exactly 30 days: not beyond the horizon
    stream.append(ev("new", "b", 30 * 24 * 60 + 2))
    live.update(stream[-1:])
    assert_matches_batch(live, stream)
    assert (live.open_cases, live.compacted_cases) == (1, 1)


def test_event_after_a_compacted_case_reopens_it_exactly() -> None:
    """An event sorting after a compacted case's last event extends the case as in batch."""
    stream = [ev("c", "a", 0), ev("c", "end", 1), ev("c", "reopen", 1), ev("c", "end", 9, "e2")]
    live = LiveDfg(end_activities={"end"})
    for e in stream:
        live.update([e])
    assert_matches_batch(live, stream)
    assert (live.reopened_cases, live.compacted_cases, live.open_cases) == (1, 2, 0)


def test_event_before_a_compacted_case_is_skipped_and_counted() -> None:
    """An event sorting before a compacted case's last event is left out and shows in skipped_events."""
    live = LiveDfg(end_activities={"end"}).update([ev("c", "a", 0), ev("c", "end", 5)])
    before = (dict(live.edge_counts), dict(live.start_activities), dict(live.end_activities))
    live.update([ev("c", "late", 3)])
    assert (dict(live.edge_counts), dict(live.start_activities), dict(live.end_activities)) == before
    assert (live.skipped_events, live.events, live.open_cases) == (1, 2, 0)


def test_event_before_the_anchor_of_a_reopened_case_is_skipped() -> None:
    """Once reopened, a case still refuses events sorting before its compacted part."""
    live = LiveDfg(end_activities={"end"}).update([ev("c", "a", 0), ev("c", "end", 5)])
    live.update([ev("c", "more", 6)]).update([ev("c", "late", 2)])
    assert dict(live.edge_counts) == {("a", "end"): 1, ("end", "more"): 1}
    assert (live.reopened_cases, live.skipped_events, live.open_cases) == (1, 1, 1)


def test_redelivered_last_event_of_a_compacted_case_is_ignored() -> None:
    """A re-delivery of the event a tombstone remembers is a duplicate, not a new step."""
    closing = ev("c", "end", 5)
    live = LiveDfg(end_activities={"end"}).update([ev("c", "a", 0), closing]).update([closing])
    assert (live.duplicates, live.events, live.open_cases) == (1, 2, 0)


def test_expired_tombstone_makes_a_late_event_a_new_case() -> None:
    """After `retain` of watermark progress a compacted case is forgotten: its next event starts a case."""
    live = LiveDfg(end_activities={"end"}, idle_horizon=timedelta(days=1), retain=timedelta(days=2))
    live.update([ev("c", "a", 0), ev("c", "end", 1)]).update([ev("x", "a", 3 * 24 * 60)])
    assert live.tombstones == 0
    live.update([ev("c", "again", 3 * 24 * 60 + 1)])
    assert (live.cases, dict(live.start_activities)) == (3, {"a": 2, "again": 1})


def test_results_are_read_only() -> None:
    """The result mappings cannot be written through."""
    live = LiveDfg().update([ev("c", "a", 0), ev("c", "b", 1)])
    with pytest.raises(TypeError):
        live.edge_counts[("a", "b")] = 5  # type: ignore[index]


def test_rejects_events_of_another_process_and_bad_options() -> None:
    """A LiveDfg bound to a process refuses other processes' events; bad options fail early."""
    with pytest.raises(ValueError, match="process 'q'"):
        LiveDfg("p").update([ev("c", "a", 0, process="q")])
    with pytest.raises(FrameError, match="lifecycle"):
        LiveMaps(lifecycle="done")
    with pytest.raises(ValueError, match="negative"):
        LiveDfg(idle_horizon=timedelta(days=-1))


def test_live_maps_is_a_subscriber_per_process_with_json_snapshots() -> None:
    """LiveMaps routes each batch by process, closes per-process end activities, snapshots as JSON."""
    maps = LiveMaps(end_activities={"p": ["end"]})
    subscriber: Subscriber = maps
    subscriber([ev("c", "a", 0), ev("k", "x", 0, process="q"), ev("c", "end", 2),
                ev("k", "end", 3, process="q")])
    assert sorted(maps) == ["p", "q"] and len(maps) == 2
    assert (maps["p"].open_cases, maps["q"].open_cases) == (0, 1)
    snap = maps.snapshot("p")
    assert json.loads(json.dumps(snap)) == snap
    assert snap["dfg"] == [{"source": "a", "target": "end", "count": 1, "wait_seconds": {"mean": 120.0}}]
    assert (snap["events"], snap["cases"], snap["start_activities"]) == (2, 1, {"a": 1})
    assert snap["state"]["compacted_cases"] == 1
    assert maps.snapshot("unknown")["events"] == 0


def test_simulated_process_compacts_to_few_open_cases() -> None:
    """On a simulated onboarding stream the live map equals batch while open cases stay few."""
    sim = simulate("onboarding", 400, seed=7)
    live = LiveDfg("onboarding", end_activities=sim.ground_truth["end_activities"])
    rng = random.Random(1)
    for at in range(0, len(sim.events), 200):
        chunk = sim.events[at:at + 200]
        live.update(rng.sample(chunk, len(chunk)))
    assert_matches_batch(live, sim.events)
    assert live.open_cases < 40 and live.compacted_cases >= 400 - 40
    assert live.skipped_events == 0


def deep_size(root: object) -> int:
    """Bytes of every object reachable from root through containers (each counted once)."""
    seen: set[int] = set()
    todo: list[Any] = [root]
    total = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            todo.extend(obj)
        elif hasattr(obj, "__slots__"):
            todo.extend(getattr(obj, s) for s in obj.__slots__ if hasattr(obj, s))
        elif hasattr(obj, "__dict__"):
            todo.append(vars(obj))
    return total


def run_live(events: Sequence[CaseEvent], ends: Sequence[str], sizes: list[int] | None = None) -> LiveDfg:
    """Feed events in batches of 5000, each shuffled (seeded); note the state size after each."""
    live, rng = LiveDfg("onboarding", end_activities=ends), random.Random(3)
    for at in range(0, len(events), 5000):
        chunk = events[at:at + 5000]
        live.update(rng.sample(chunk, len(chunk)))
        if sizes is not None:
            sizes.append(deep_size(live))
    return live


@pytest.mark.bench
def test_bench_live_memory_is_bounded() -> None:
    """Benchmark: state for ~1M events stays within 1.3x of ~100k (tracemalloc, deep size); throughput."""
    peaks: dict[int, int] = {}
    retained: dict[int, int] = {}
    for target in (100_000, 1_000_000):
        sim = simulate("onboarding", round(target / 7.5), seed=11)
        ends, n = sim.ground_truth["end_activities"], len(sim.events)
        gc.collect()
        started = time.perf_counter()
        live = run_live(sim.events, ends)
        rate = n / (time.perf_counter() - started)
        assert_matches_batch(live, sim.events)
        del live
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        live = run_live(sim.events, ends)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peaks[target] = peak - base
        sizes: list[int] = []
        run_live(sim.events, ends, sizes)
        retained[target] = max(sizes)
        print(f"\n{n:>9,} events {live.cases:>7,} cases: update {rate:>9,.0f} events/s; "
              f"tracemalloc peak {peaks[target] / 1e6:.2f} MB, after {(current - base) / 1e6:.2f} MB; "
              f"retained state max {retained[target] / 1e6:.2f} MB, at end {deep_size(live) / 1e6:.2f} MB "
              f"(open cases {live.open_cases}, tombstones {live.tombstones}); late events "
              f"{live.late_events:,}, reopened {live.reopened_cases}, skipped {live.skipped_events}")
        del sim, live
    ratios = peaks[1_000_000] / peaks[100_000], retained[1_000_000] / retained[100_000]
    print(f"1M / 100k: tracemalloc peak {ratios[0]:.2f}x, retained state max {ratios[1]:.2f}x "
          "(target <= 1.3x)")
    assert max(ratios) <= 1.3
