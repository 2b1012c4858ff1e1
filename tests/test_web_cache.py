"""The web's per-process cache against a real SQLite store: reused, dropped only for the process
that received events, bounded, computed once under concurrency; and through the server, the
figures follow new events within about a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from web_support import fill_store, web_settings

from backlight.web.api import get_process
from backlight.web.cache import ProcessCache
from backlight.web.server import running
from backlight.web.service import WebService
from schemas.event import CaseEvent, to_time_us
from storage import SQLiteStore

T0 = datetime.fromisoformat("2026-03-02T09:00:00+00:00")


class Clock:
    """A clock the test moves by hand (the cache checks the store at most once a second)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def case(process: str, case_id: str, start: datetime = T0) -> list[CaseEvent]:
    """A three-step case of ``process``."""
    return [CaseEvent(f"{process}-{case_id}-{i}", process, case_id, activity,
                      to_time_us(start + timedelta(hours=i)))
            for i, activity in enumerate(("Receive", "Check", "Close"))]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "store.db")
    s.write(case("a", "a1") + case("b", "b1"))
    yield s
    s.close()


def counting(calls: list[str], process: str, store: SQLiteStore) -> Callable[[], int]:
    """A computation that records its call and returns the process's stored event count."""
    def compute() -> int:
        calls.append(process)
        return store.events(process).height
    return compute


def test_value_is_reused_until_the_process_gets_events(store: SQLiteStore) -> None:
    """A second get reuses the value; new events of "a" drop "a"'s entries only, and only
    once the check interval has passed."""
    clock = Clock()
    cache: ProcessCache[int] = ProcessCache(store, clock=clock)
    calls: list[str] = []
    assert cache.get(("a", "all"), counting(calls, "a", store)) == 3
    assert cache.get(("b", "all"), counting(calls, "b", store)) == 3
    assert cache.get(("a", "all"), counting(calls, "a", store)) == 3
    assert calls == ["a", "b"] and cache.hits == 1
    store.write(case("a", "a2"))
    clock.now += 0.5
    assert cache.get(("a", "all"), counting(calls, "a", store)) == 3  # not checked yet
    clock.now += 0.6
    assert cache.get(("a", "all"), counting(calls, "a", store)) == 6
    assert cache.get(("b", "all"), counting(calls, "b", store)) == 3
    assert calls == ["a", "b", "a"]
    assert cache.invalidations == 1


def test_events_of_a_new_process_leave_the_others_cached(store: SQLiteStore) -> None:
    """Events of a process the cache holds nothing of drop nothing."""
    clock = Clock()
    cache: ProcessCache[int] = ProcessCache(store, clock=clock)
    calls: list[str] = []
    cache.get(("a", "all"), counting(calls, "a", store))
    store.write(case("c", "c1"))
    clock.now += 2
    cache.get(("a", "all"), counting(calls, "a", store))
    assert calls == ["a"] and cache.invalidations == 0


def test_least_recently_used_entry_goes_beyond_the_bound(store: SQLiteStore) -> None:
    """With room for two entries, the one not used for longest is computed again."""
    cache: ProcessCache[int] = ProcessCache(store, max_entries=2, clock=Clock())
    calls: list[str] = []

    def compute(window: str) -> Callable[[], int]:
        def run() -> int:
            calls.append(window)
            return len(calls)
        return run

    for window in ("4w", "all", "4w", "quarter", "4w", "all"):
        cache.get(("a", window), compute(window))
    assert calls == ["4w", "all", "quarter", "all"]


def test_concurrent_gets_compute_once(store: SQLiteStore) -> None:
    """Eight threads asking for the same missing entry at once share one computation."""
    cache: ProcessCache[object] = ProcessCache(store, clock=Clock())
    calls: list[int] = []
    start = threading.Barrier(8)
    got: list[object] = []

    def compute() -> object:
        calls.append(1)
        time.sleep(0.2)
        return object()

    def ask() -> None:
        start.wait()
        got.append(cache.get(("a", "all"), compute))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert len(got) == 8 and all(g is got[0] for g in got)


def test_value_computed_across_an_invalidation_is_not_kept(store: SQLiteStore) -> None:
    """If the process gets events while its value is being computed, that value is returned
    but not kept: the next get computes again."""
    clock = Clock()
    cache: ProcessCache[int] = ProcessCache(store, clock=clock)
    calls: list[str] = []

    def racing() -> int:
        calls.append("a")
        seen = store.events("a").height
        store.write(case("a", f"a{len(calls) + 10}"))
        cache.refresh(force=True)  # another request notices the new events meanwhile
        return seen

    assert cache.get(("a", "all"), racing) == 3
    assert cache.get(("a", "all"), counting(calls, "a", store)) == 6
    assert calls == ["a", "a"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    path = tmp_path_factory.mktemp("web-cache") / "store.db"
    fill_store(path, cases=150)
    with running(web_settings(path)) as url:
        yield url, path


def test_server_figures_follow_new_events(served: tuple[str, Path]) -> None:
    """After events of payments are written to the store, /api/processes/payments shows them
    (the cache looks for new events once a second; how soon is the benchmark's business, this
    waits up to 15 s); claims is unchanged."""
    url, path = served
    with httpx.Client(base_url=url, timeout=30) as http:
        before = http.get("/api/processes/payments").json()
        claims = http.get("/api/processes/claims").json()
        assert http.get("/api/processes/payments").json() == before
        latest = datetime.fromisoformat(before["window"]["to"])
        writer = SQLiteStore(path)
        try:
            writer.write(case("payments", "late-case", latest + timedelta(hours=1)))
        finally:
            writer.close()
        written = time.monotonic()
        while True:
            now = http.get("/api/processes/payments").json()
            if now["events"] != before["events"] or time.monotonic() - written > 15:
                break
            time.sleep(0.05)
        assert now["events"] == before["events"] + 3
        assert now["cases"] == before["cases"] + 1
        assert http.get("/api/processes/claims").json() == claims
        rows = {r["name"]: r for r in http.get("/api/processes").json()}
        assert rows["payments"]["events"] == now["events"]


def test_a_process_without_a_reference_model_is_read_once_per_view(tmp_path: Path) -> None:
    """The API's process document reads the window's events once: conformance, with no
    documented model to check against, does not read them again."""
    fill_store(tmp_path / "store.db", cases=60)
    svc = WebService(web_settings(tmp_path / "store.db"))
    try:
        get_process("claims", svc, "all")
        assert (svc.frames.misses, svc.frames.hits) == (1, 0)
        assert svc.conformance("claims", "all") is None
        assert (svc.frames.misses, svc.frames.hits) == (1, 0)
    finally:
        svc.close()
