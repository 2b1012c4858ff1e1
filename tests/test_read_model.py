"""ReadModel: folded in any arrival order it equals a rebuild, and its figures equal `mine`'s."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Collection

import pytest
from conftest import event_frame, shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.logfiles import read_log
from ingest.simulate import simulate
from mining.case_facts import CaseFacts
from mining.figures import Figures
from mining.read_model import DAY_US, MemoryHistory, ReadModel, day_of
from mining.summary import summarize
from schemas.event import CaseEvent

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00Z in microseconds
END = "Close"


@st.composite
def logs(draw: st.DrawFn) -> list[CaseEvent]:
    """A few cases over some days: small alphabets so ties, rework, loops and hand-offs happen."""
    events: list[CaseEvent] = []
    for case in range(draw(st.integers(1, 8))):
        for step in range(draw(st.integers(1, 7))):
            events.append(CaseEvent(
                event_id=f"c{case}-{step}", process="claims", case_id=f"c{case}",
                activity=draw(st.sampled_from(["Register", "Check", "Approve", END])),
                time_us=T0 + draw(st.integers(0, 20)) * DAY_US // 4 + draw(st.sampled_from([0, 1, 999])),
                # the first event is a completion: rework's basis is a process's completions
                # whenever it has any (every real log has), see mining/case_facts.py
                lifecycle="complete" if not events else draw(
                    st.sampled_from(["complete", "complete", "complete", "start"])),
                resource=draw(st.sampled_from([None, "ann", "bob"])),
                team=draw(st.sampled_from([None, "front", "back"]))))
    return events


def arrivals(events: list[CaseEvent], rnd: random.Random) -> list[list[CaseEvent]]:
    """The events shuffled, some delivered twice, cut into batches."""
    stream = events + rnd.sample(events, k=rnd.randint(0, len(events)))
    rnd.shuffle(stream)
    cuts = sorted(rnd.sample(range(1, len(stream)), k=min(len(stream) - 1, rnd.randint(0, 6))))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def fold(batches: list[list[CaseEvent]], ends: Collection[str] = (END,)) -> tuple[ReadModel, list[CaseEvent]]:
    """A model folded batch by batch against a store, and the distinct events by first arrival."""
    store = MemoryHistory()
    model = ReadModel("claims", end_activities=ends, history=store)
    for batch in batches:
        model.update(batch)
        store.keep(batch)
    first: dict[str, CaseEvent] = {}
    for event in (e for batch in batches for e in batch):
        first.setdefault(event.event_id, event)
    return model, list(first.values())


@settings(max_examples=400, deadline=None)
@given(logs(), st.randoms(use_true_random=False))
def test_any_arrival_order_folds_to_the_model_built_in_one_go(
        events: list[CaseEvent], rnd: random.Random) -> None:
    """Late, out-of-order and repeated events, completed cases reopened: the model equals a rebuild."""
    model, distinct = fold(arrivals(events, rnd))
    rebuilt = ReadModel("claims", end_activities=(END,)).update(distinct)
    assert model == rebuilt
    assert model.figures() == rebuilt.figures()


@settings(max_examples=300, deadline=None)
@given(logs(), st.randoms(use_true_random=False))
def test_its_figures_equal_the_batch_mining_on_the_same_events(
        events: list[CaseEvent], rnd: random.Random) -> None:
    """Counts and means equal `summarize` exactly; medians, p90s and maxima are within alpha."""
    model, distinct = fold(arrivals(events, rnd))
    assert_equals_mine(model, distinct)


@pytest.mark.parametrize("source", ["bpic2012", "simulator"])
def test_on_bpic_2012_and_the_simulator_its_figures_equal_mine(source: str) -> None:
    """BPIC 2012 (262,200 events) and a simulated claims process, folded in 1,000-event batches
    in the order they were recorded, with outcomes as end activities: the figures equal `mine`'s."""
    if source == "bpic2012":
        events = list(read_log(shared_file("logs/bpic2012.xes.gz"), "claims"))
        ends: tuple[str, ...] = ("A_DECLINED", "A_CANCELLED", "A_REGISTERED")
    else:
        events = list(simulate("claims", 3_000, seed=7).events)
        ends = ("Close claim", "Reject claim", "Withdraw claim")
    store = MemoryHistory()
    model = ReadModel("claims", end_activities=ends, history=store)
    for start in range(0, len(events), 1_000):
        batch = events[start:start + 1_000]
        model.update(batch)
        store.keep(batch)
    assert model.reopened > 0 or source == "simulator"  # BPIC's outcomes are not always last
    assert_equals_mine(model, events)


def assert_equals_mine(model: ReadModel, distinct: list[CaseEvent]) -> None:
    """The model's figures against `summarize` on the distinct events in first-arrival order."""
    figures, doc = model.figures(), summarize(event_frame(distinct), model.process)
    assert (figures.events, figures.cases) == (doc["events"], doc["cases"])
    assert list(figures.activities.items()) == [(a["name"], a["count"]) for a in doc["activities"]]
    assert figures.start_activities == doc["start_activities"]
    assert figures.end_activities == doc["end_activities"]
    assert figures.variants == {tuple(v["activities"]): v["count"] for v in doc["variants"]}
    edges = figures.edges
    assert {k: s.count for k, s in edges.items()} == {
        (e["source"], e["target"]): e["count"] for e in doc["dfg"]}
    for edge in doc["dfg"]:
        sketch = edges[(edge["source"], edge["target"])]
        close_to(sketch.mean_s, edge["wait_seconds"]["mean"], 0.0)
        for figure, q in (("median", 0.5), ("p90", 0.9)):
            close_to(sketch.quantile_s(q), edge["wait_seconds"][figure], model.alpha)
        close_to(sketch.max_s, edge["wait_seconds"]["max"], model.alpha)
    handoffs = figures.handoffs
    assert {k: (s.count, figures.handoff_cases[k]) for k, s in handoffs.items()} == {
        (h["from_team"], h["to_team"]): (h["count"], h["cases"]) for h in doc["handoffs"]}
    assert {a: (r.cases, r.self_loop_cases, r.loop_cases, r.repeat_cases, r.redo_cases)
            for a, r in figures.rework.items()} == {
        r["activity"]: (r["cases"], r["self_loop_cases"], r["loop_cases"], r["repeat_cases"], r["redo_cases"])
        for r in doc["rework"]}
    durations = figures.durations
    close_to(durations.mean_s, doc["case_duration_seconds"]["mean"], 0.0)
    close_to(durations.quantile_s(0.5), doc["case_duration_seconds"]["median"], model.alpha)
    close_to(durations.quantile_s(0.9), doc["case_duration_seconds"]["p90"], model.alpha)


def close_to(estimate: float, rounded_exact: float, alpha: float) -> None:
    """Within alpha of a figure `summarize` rounded to 3 decimals."""
    assert math.isclose(estimate, rounded_exact, rel_tol=alpha * (1 + 1e-9),
                        abs_tol=0.0005 * (1 + alpha) + 1e-9)


def event(case: str, activity: str, day: float, eid: str) -> CaseEvent:
    """One complete claims event `day` days after T0."""
    return CaseEvent(eid, "claims", case, activity, T0 + round(day * DAY_US))


def test_a_case_counts_in_the_day_it_completed_and_moves_when_it_gets_one_more_event() -> None:
    """A completed case sits in its closing day's figures; a late step reopens it and it counts again."""
    store = MemoryHistory()
    model = ReadModel("claims", end_activities=(END,), history=store)
    first = [event("a", "Register", 0, "1"), event("a", END, 2.5, "2"), event("b", "Register", 1, "3")]
    model.update(first)
    store.keep(first)
    assert list(model.days) == [day_of(T0 + 2 * DAY_US)]
    assert set(model.open_cases) == {"b"}
    assert model.completed(since_us=T0 + 3 * DAY_US).cases == 0
    assert model.completed(since_us=T0 + 2 * DAY_US + 1).cases == 1  # whole days: the day of since

    late = [event("a", "Check", 4, "4"), event("a", END, 5, "5")]
    model.update(late)
    assert model.reopened == 1
    assert list(model.days) == [day_of(T0 + 5 * DAY_US)]
    assert model.figures().variants == {("Register", END, "Check", END): 1, ("Register",): 1}


def test_a_redelivered_event_counts_once() -> None:
    """The same event id twice, in one batch or two, is one event."""
    store = MemoryHistory()
    model = ReadModel("claims", end_activities=(END,), history=store)
    for batch in ([event("a", "Register", 0, "1"), event("a", "Register", 0, "1")],
                  [event("a", "Register", 0, "1")]):
        model.update(batch)
        store.keep(batch)
    assert (model.figures().events, model.duplicates) == (1, 2)


def test_events_of_other_processes_and_lifecycles_are_left_out() -> None:
    """A model folds its own process, and only its lifecycle when one is set."""
    model = ReadModel("claims", lifecycle="complete")
    model.update([event("a", "Register", 0, "1"), CaseEvent("2", "payments", "p", "Pay", T0),
                  CaseEvent("3", "claims", "a", "Check", T0 + 1, "start")])
    assert (model.figures().events, model.figures().cases) == (1, 1)
    with pytest.raises(ValueError, match="lifecycle"):
        ReadModel("claims", lifecycle="finished")


@settings(max_examples=200, deadline=None)
@given(logs(), st.randoms(use_true_random=False))
def test_a_model_restored_from_what_it_stored_goes_on_exactly(
        events: list[CaseEvent], rnd: random.Random) -> None:
    """Days and open cases written as JSON after each batch, read back by a new model half-way:
    it folds the rest to the same model as one that never stopped."""
    batches = arrivals(events, rnd)
    store = MemoryHistory()
    model = ReadModel("claims", end_activities=(END,), history=store)
    days: dict[int, object] = {}
    open_cases: dict[str, object] = {}
    for number, batch in enumerate(batches):
        if number == len(batches) // 2:  # a restart: only what was stored survives
            model = ReadModel(
                "claims", end_activities=(END,), history=store,
                days={d: Figures.from_doc(json.loads(doc)) for d, doc in days.items()},
                open_cases={c: CaseFacts.from_doc(json.loads(doc)) for c, doc in open_cases.items()})
        model.update(batch)
        store.keep(batch)
        changes = model.drain()
        for day, figures in changes.days.items():
            days.pop(day, None) if figures is None else days.__setitem__(day, json.dumps(figures.to_doc()))
        for case, facts in changes.open_cases.items():
            open_cases.pop(case, None) if facts is None else open_cases.__setitem__(
                case, json.dumps(facts.to_doc()))
    whole, _ = fold(batches)
    assert model == whole
    assert {d: json.loads(doc) for d, doc in days.items()} == {d: f.to_doc() for d, f in whole.days.items()}
    assert set(open_cases) == set(whole.open_cases)
