"""ReadModel: folded in any arrival order it equals a rebuild, and its figures equal `mine`'s."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Collection, Mapping

import pytest
from conftest import event_frame
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_logs_support import shared_events

from alerts.calendar import WorkCalendar
from backlight.read_models import working_time
from ingest.simulate import simulate
from mining.case_facts import CaseFacts
from mining.errors import FrameError
from mining.figures import Figures
from mining.read_model import DAY_US, Changes, MemoryHistory, ReadModel, day_of
from mining.rework import MAX_LOOPS
from mining.summary import summarize
from schemas.event import CaseEvent

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00Z in microseconds
END = "Close"
WORKING = working_time(WorkCalendar())
"""Working time Mon-Fri 09:00-17:30 Amsterdam: durations are kept in it too, taken out and
counted again with the cases."""


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
    model = ReadModel("claims", end_activities=ends, history=store, business=WORKING)
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
    rebuilt = ReadModel("claims", end_activities=(END,), business=WORKING).update(distinct)
    assert model == rebuilt
    assert model.figures() == rebuilt.figures()


@settings(max_examples=300, deadline=None)
@given(logs(), st.randoms(use_true_random=False))
def test_its_figures_equal_the_batch_mining_on_the_same_events(
        events: list[CaseEvent], rnd: random.Random) -> None:
    """Counts, loops and means equal `summarize` exactly; medians, p90s and maxima are within
    alpha."""
    model, distinct = fold(arrivals(events, rnd))
    assert_equals_mine(model, distinct)


@pytest.mark.parametrize("source", ["bpic2012", "simulator"])
def test_on_bpic_2012_and_the_simulator_its_figures_equal_mine(source: str) -> None:
    """BPIC 2012 (262,200 events) and a simulated claims process, folded in 1,000-event batches
    in the order they were recorded, with outcomes as end activities: the figures equal `mine`'s."""
    if source == "bpic2012":
        events = shared_events("bpic2012.xes.gz", "bpic2012")
        ends: tuple[str, ...] = ("A_DECLINED", "A_CANCELLED", "A_REGISTERED")
    else:
        events = list(simulate("claims", 3_000, seed=7).events)
        ends = ("Close claim", "Reject claim", "Withdraw claim")
    store = MemoryHistory()
    model = ReadModel(source if source == "bpic2012" else "claims", end_activities=ends,
                      history=store)
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
    loops = [(tuple(lp["cycle"]), lp["cases"]) for lp in doc["loops"]]
    assert [(lp.cycle, lp.cases) for lp in figures.loops][:MAX_LOOPS] == loops
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
    with pytest.raises(FrameError, match="lifecycle"):
        ReadModel("claims", lifecycle="finished")


class JsonStore:
    """What a store keeps of a model, as JSON text: days, open cases and the two totals."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}
        self.open: dict[str, str] = {}
        self.totals = (json.dumps(Figures().to_doc()), json.dumps(Figures().to_doc()))
        self.asked: list[int] = []

    def write(self, changes: Changes) -> None:
        """Apply what a drain said changed."""
        for day, figures in changes.days.items():
            self.days.pop(day, None) if figures is None else self.days.__setitem__(
                day, json.dumps(figures.to_doc()))
        for case, facts in changes.open_cases.items():
            self.open.pop(case, None) if facts is None else self.open.__setitem__(
                case, json.dumps(facts.to_doc()))
        self.totals = (json.dumps(changes.completed.to_doc()), json.dumps(changes.open.to_doc()))

    # the Stored protocol: a model over this store asks for what it touches
    def days_of(self, keys: Collection[int]) -> Mapping[int, Figures]:
        self.asked.extend(keys)
        return {d: Figures.from_doc(json.loads(self.days[d])) for d in keys if d in self.days}

    def days_from(self, start: int) -> Mapping[int, Figures]:
        return {d: Figures.from_doc(json.loads(doc)) for d, doc in self.days.items() if d >= start}

    def open_cases(self, case_ids: Collection[str]) -> Mapping[str, CaseFacts]:
        return {c: CaseFacts.from_doc(json.loads(self.open[c])) for c in case_ids if c in self.open}

    def restored(self, history: MemoryHistory, lazy: bool) -> ReadModel:
        """A new model from what was stored: everything read back, or only the totals (lazy)."""
        totals = tuple(Figures.from_doc(json.loads(t)) for t in self.totals)
        if lazy:
            return ReadModel("claims", end_activities=(END,), history=history, business=WORKING,
                             stored=StoredView(self), totals=(totals[0], totals[1]))
        return ReadModel("claims", end_activities=(END,), history=history, business=WORKING,
                         days={d: Figures.from_doc(json.loads(doc)) for d, doc in self.days.items()},
                         open_cases=self.open_cases(list(self.open)))


class StoredView:
    """JsonStore under the `Stored` protocol's names."""

    def __init__(self, store: JsonStore) -> None:
        self.store = store

    def days(self, keys: Collection[int]) -> Mapping[int, Figures]:
        return self.store.days_of(keys)

    def days_from(self, start: int) -> Mapping[int, Figures]:
        return self.store.days_from(start)

    def open_cases(self, case_ids: Collection[str]) -> Mapping[str, CaseFacts]:
        return self.store.open_cases(case_ids)


@settings(max_examples=200, deadline=None)
@given(logs(), st.randoms(use_true_random=False), st.booleans())
def test_a_model_restored_from_what_it_stored_goes_on_exactly(
        events: list[CaseEvent], rnd: random.Random, lazy: bool) -> None:
    """What each batch changed is written as JSON; half-way a new model starts from it (all read
    back, or only the totals, asking for days and open cases as it touches them): it folds the
    rest to what a model that never stopped stores, and its figures and windows are the same."""
    batches = arrivals(events, rnd)
    history, stored = MemoryHistory(), JsonStore()
    model = ReadModel("claims", end_activities=(END,), history=history, business=WORKING)
    for number, batch in enumerate(batches):
        if number == len(batches) // 2:  # a restart: only what was stored survives
            model = stored.restored(history, lazy)
        model.update(batch)
        history.keep(batch)
        stored.write(model.drain())
    whole, _ = fold(batches)
    assert model.figures() == whole.figures()
    assert model.completed(T0 + 3 * DAY_US) == whole.completed(T0 + 3 * DAY_US)
    assert {d: json.loads(doc) for d, doc in stored.days.items()} == {
        d: f.to_doc() for d, f in whole.days.items()}
    assert {c: json.loads(doc) for c, doc in stored.open.items()} == {
        c: f.to_doc() for c, f in whole.open_cases.items()}
    if not lazy:
        assert model == whole
