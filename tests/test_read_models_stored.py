"""Persisted read models on real SQLite and PostgreSQL: folded once, read without the history."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from conftest import event_frame
from pg import fresh_database

from alerts.calendar import WorkCalendar
from backlight.figures_view import figures_view, window_days
from backlight.read_models import ReadModels, figures, working_time
from ingest.simulate import simulate
from mining.read_model import DAY_US, ReadModel
from mining.render import MapData, MapOptions, build_map
from mining.summary import summarize
from mining.windows import completed_between
from schemas.event import CaseEvent, from_time_us
from storage import EventStore, ReadModelTables, open_store

T_NOW = int(time.time()) * 1_000_000
ENDS = {"claims": ("Close claim", "Reject claim", "Withdraw claim"), "payments": ()}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store on each database (PostgreSQL: a fresh database on the session's server)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield fresh_database(request.getfixturevalue("postgres_url"))


def stream() -> list[CaseEvent]:
    """Claims and payments events interleaved as they would arrive, some late by a day or two."""
    claims = simulate("claims", 300, seed=3).events
    payments = simulate("payments", 200, seed=4).events
    rnd = random.Random(5)
    mixed = sorted([*claims, *payments], key=lambda e: e.time_us + rnd.choice([0, 0, 0, DAY_US, 2 * DAY_US]))
    return mixed


def write(store: EventStore, events: list[CaseEvent], size: int = 700) -> None:
    """Store events in batches, as the consumer does."""
    for start in range(0, len(events), size):
        store.write(events[start:start + size])


def expected(events: list[CaseEvent], process: str) -> ReadModel:
    """The model of a process built in one go from its events."""
    return ReadModel(process, end_activities=ENDS[process]).update(events)


def test_catching_up_folds_every_event_once_and_the_tables_alone_answer(store_url: str) -> None:
    """Two catch-ups around more events (late ones included): the stored figures equal a model built
    in one go and `mine`'s counts; a new instance folds nothing and reads the same."""
    events = stream()
    store = open_store(store_url)
    tables = ReadModelTables(store_url)
    try:
        half = len(events) // 2
        write(store, events[:half])
        models = ReadModels(store, tables, ENDS, batch=1_000)
        assert models.catch_up() == half
        write(store, events[half:])
        assert models.catch_up() == len(events) - half
        for process in ENDS:
            mine = [e for e in events if e.process == process]
            stored = figures(tables, process)
            assert stored == expected(mine, process).figures()
            doc = summarize(event_frame(mine), process)
            assert (stored.events, stored.cases) == (doc["events"], doc["cases"])
            assert stored.variants == {tuple(v["activities"]): v["count"] for v in doc["variants"]}
        last = max(e.time_us for e in events)
        recent = figures(tables, "claims", since_us=last - 28 * DAY_US)
        assert 0 < recent.cases < figures(tables, "claims").cases
        assert ReadModels(store, ReadModelTables(store_url), ENDS).catch_up() == 0
    finally:
        tables.close()
        store.close()


def test_instances_following_at_once_never_fold_an_event_twice(store_url: str) -> None:
    """Three instances catch up together while events are written: together they fold each
    event once, and the figures equal a model built in one go."""
    events = stream()
    store = open_store(store_url)
    write(store, events[:1_000])
    folded: list[int] = []
    errors: list[BaseException] = []
    writing = threading.Event()

    def follow() -> None:
        own_store, own_tables = open_store(store_url), ReadModelTables(store_url)
        try:
            models = ReadModels(own_store, own_tables, ENDS, batch=300)
            total = 0
            while writing.is_set():
                total += models.catch_up()
            total += models.catch_up()
            folded.append(total)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own_tables.close()
            own_store.close()

    writing.set()
    threads = [threading.Thread(target=follow) for _ in range(3)]
    for thread in threads:
        thread.start()
    write(store, events[1_000:], size=250)
    writing.clear()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert sum(folded) == len(events)
    tables = ReadModelTables(store_url)
    try:
        for process in ENDS:
            assert figures(tables, process) == expected([e for e in events if e.process == process],
                                                        process).figures()
    finally:
        tables.close()
        store.close()


def test_rebuild_gives_back_what_was_folded(store_url: str) -> None:
    """Rebuilding one process, then all, from the events leaves the same figures."""
    events = stream()
    store = open_store(store_url)
    tables = ReadModelTables(store_url)
    try:
        write(store, events)
        models = ReadModels(store, tables, ENDS, batch=800)
        models.catch_up()
        before = {p: figures(tables, p) for p in ENDS}
        seen: list[int] = []
        assert models.rebuild("claims", progress=seen.append) == sum(e.process == "claims" for e in events)
        assert sum(seen) == len(events)
        assert {p: figures(tables, p) for p in ENDS} == before
        assert models.rebuild() == len(events)
        assert {p: figures(tables, p) for p in ENDS} == before
    finally:
        tables.close()
        store.close()



def test_changed_end_activities_or_calendar_fold_the_process_again(store_url: str) -> None:
    """After the config changes a process's end activities, or its calendar, the next folder
    folds that process again from the events before adding new ones (never a fold that takes
    out what was counted another way): its figures equal a fresh fold with the new config, and
    the other process's are still those of its own config."""
    events = stream()
    half = len(events) // 2
    store = open_store(store_url)
    tables = ReadModelTables(store_url)
    try:
        write(store, events[:half])
        ReadModels(store, tables, ENDS, batch=900).catch_up()
        fewer = {**ENDS, "claims": ("Close claim",)}
        write(store, events[half:])
        folded = ReadModels(store, tables, fewer, batch=900)
        folded.catch_up()
        claims = [e for e in events if e.process == "claims"]
        fresh = ReadModel("claims", end_activities=fewer["claims"]).update(claims)
        assert figures(tables, "claims") == fresh.figures()
        assert figures(tables, "claims", since_us=0) == fresh.completed(0)
        assert tables.open_count("claims") == len(fresh.open_cases)
        mine = [e for e in events if e.process == "payments"]
        assert figures(tables, "payments") == expected(mine, "payments").figures()

        calendar = WorkCalendar(timezone="America/New_York")
        timed = ReadModels(store, tables, fewer, batch=900, default_calendar=calendar)
        late = [msgspec.structs.replace(e, event_id=f"late-{e.event_id}", time_us=e.time_us + 60_000_000)
                for e in claims[:50]]
        write(store, late)
        timed.catch_up()
        again = ReadModel("claims", end_activities=fewer["claims"],
                          business=working_time(calendar)).update([*claims, *late])
        assert figures(tables, "claims") == again.figures()
        assert figures(tables, "claims").business_durations.count == again.figures().cases
    finally:
        tables.close()
        store.close()

def test_a_bounded_catch_up_folds_whole_batches_and_says_what_is_left(store_url: str) -> None:
    """catch_up(limit) stops after the batch that reaches the limit; behind() counts the rest,
    and the next catch-up folds exactly those."""
    events = stream()
    store = open_store(store_url)
    tables = ReadModelTables(store_url)
    try:
        write(store, events)
        models = ReadModels(store, tables, ENDS, batch=400)
        first = models.catch_up(limit=1_000)
        assert first == 1_200  # three batches of 400: the third reaches the limit
        assert models.behind() == len(events) - first
        assert models.catch_up() == len(events) - first
        assert models.behind() == 0
    finally:
        tables.close()
        store.close()


def test_a_reader_leaves_the_folding_to_an_instance_it_sees_folding(store_url: str) -> None:
    """A yielding catch-up (the web's) folds while nobody else does; once it sees another
    instance move the mark it folds nothing and reads that instance's figures, and when that
    instance has not folded for ``yield_s`` it folds again."""
    events = stream()
    third = len(events) // 3
    store = open_store(store_url)
    tables = ReadModelTables(store_url)
    try:
        reader = ReadModels(store, tables, ENDS, batch=500, yield_s=3.0)
        folder = ReadModels(store, tables, ENDS, batch=500)
        write(store, events[:third])
        assert reader.catch_up(limit=10_000, yielding=True) == third
        write(store, events[third:2 * third])
        assert folder.catch_up() == third
        write(store, events[2 * third:])
        assert reader.catch_up(limit=10_000, yielding=True) == 0
        assert reader.catch_up(limit=10_000, yielding=True) == 0
        assert reader.behind() == len(events) - 2 * third
        time.sleep(3.1)
        assert reader.catch_up(limit=10_000, yielding=True) == len(events) - 2 * third
        assert reader.behind() == 0
        for process in ENDS:
            mine = [e for e in events if e.process == process]
            assert figures(tables, process) == expected(mine, process).figures()
    finally:
        tables.close()
        store.close()


def test_a_case_stored_at_year_9999_counts_in_all_time_not_in_a_recent_window(store_url: str) -> None:
    """An event stored before dates were checked, completing a case on 9999-12-31, is counted
    for all time but never in "the last 4 weeks" (which end tomorrow at the latest), and the
    answer is strict JSON."""
    far = 253_402_300_799_000_000  # 9999-12-31T23:59:59Z
    store, tables = open_store(store_url), ReadModelTables(store_url)
    try:
        store.write([CaseEvent("f1", "claims", "far", "Register claim", far),
                     CaseEvent("f2", "claims", "far", "Close claim", far + 1),
                     CaseEvent("n1", "claims", "near", "Register claim", T_NOW - DAY_US),
                     CaseEvent("n2", "claims", "near", "Close claim", T_NOW)])
        models = ReadModels(store, tables, ENDS)
        whole = figures_view(models, tables, "claims", "all")
        recent = figures_view(models, tables, "claims", "4w")
        assert (whole.cases, recent.cases) == (2, 1)
        json.loads(recent.model_dump_json(), parse_constant=lambda bad: pytest.fail(f"not JSON: {bad}"))
    finally:
        tables.close()
        store.close()


def test_a_window_map_from_the_days_is_the_map_of_the_window_cases_events(store_url: str) -> None:
    """The map of the last 4 weeks and of the quarter drawn from the stored days (what the web
    draws with every activity shown) has the activities, paths and counts of the map drawn
    from the events of the cases completed in those days."""
    events = stream()
    store = open_store(store_url)
    tables = ReadModelTables(store_url)
    try:
        write(store, events)
        ReadModels(store, tables, ENDS).catch_up()
        now = from_time_us(max(e.time_us for e in events))
        assert now is not None
        for window in ("4w", "quarter"):
            span = window_days(tables, "claims", window, now)
            assert span is not None
            first, until = from_time_us(span[0]), from_time_us(span[1] + DAY_US)
            assert first is not None and until is not None
            claims = sorted((e for e in events if e.process == "claims"), key=lambda e: e.time_us)
            cases = completed_between(event_frame(claims), first, until, ENDS["claims"])
            ours = build_map(MapData.of(figures(tables, "claims", *span)), MapOptions(paths=1.0))
            theirs = build_map(cases, MapOptions(paths=1.0))
            assert cases.height > 0 and ours.activities == theirs.activities
            assert [(e.source, e.target, e.count) for e in ours.edges] == [
                (e.source, e.target, e.count) for e in theirs.edges]
    finally:
        tables.close()
        store.close()
