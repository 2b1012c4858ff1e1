"""The web's bounds as pure logic: failed sign-ins per client in a sliding minute, map
thresholds snapped to 5% steps, and the gate that keeps map renders few and waiting bounded."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from backlight.config import ConfigError, load
from backlight.web.limits import AttemptLimiter, RenderBusy, RenderGate, quantise


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_refuses_beyond_the_limit_until_the_oldest_failure_leaves_the_minute() -> None:
    """Ten failures in a minute: the eleventh attempt must wait until the first is a minute old."""
    clock = Clock()
    limiter = AttemptLimiter(10, clock=clock)
    for i in range(10):
        assert limiter.attempt("203.0.113.5") is None
        assert limiter.failures("203.0.113.5") == i + 1
        clock.now += 2
    assert limiter.attempt("203.0.113.5") == 40  # first failure at 1000, now 1020
    assert limiter.failures("203.0.113.5") == 10  # a refused attempt is not counted
    assert limiter.attempt("203.0.113.6") is None  # another client is not limited
    clock.now = 1060.5
    assert limiter.attempt("203.0.113.5") is None  # the first one left the minute
    assert limiter.attempt("203.0.113.5") == 2


def test_successful_attempts_are_not_failures() -> None:
    """An attempt that succeeded is taken back: twenty sign-ins in a minute, none refused."""
    limiter = AttemptLimiter(3, clock=Clock())
    for _ in range(20):
        assert limiter.attempt("198.51.100.1") is None
        limiter.succeeded("198.51.100.1")
    assert limiter.failures("198.51.100.1") == 0


def test_parallel_attempts_cannot_slip_past_the_limit() -> None:
    """Attempts are counted when admitted: 50 threads at once, exactly `limit` get through."""
    limiter = AttemptLimiter(10, clock=Clock())
    start = threading.Barrier(50)
    admitted: list[bool] = []

    def attempt() -> None:
        start.wait(30)
        admitted.append(limiter.attempt("192.0.2.9") is None)

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert admitted.count(True) == 10 and len(admitted) == 50


def test_limiter_remembers_a_bounded_number_of_clients() -> None:
    """Beyond max_clients addresses, the least recently seen are forgotten (memory bounded)."""
    limiter = AttemptLimiter(1, max_clients=100, clock=Clock())
    for i in range(1000):
        limiter.attempt(f"10.0.{i // 256}.{i % 256}")
    assert limiter.attempt("10.0.3.231") == 60  # the newest: still limited
    assert limiter.failures("10.0.0.0") == 0  # the oldest: forgotten
    assert len(limiter._failures) == 100


@pytest.mark.parametrize(("value", "low", "expected"), [
    (0.5, 0.05, 0.5), (0.5123, 0.05, 0.5), (0.526, 0.05, 0.55), (0.0, 0.05, 0.05),
    (0.001, 0.05, 0.05), (1.0, 0.05, 1.0), (0.99, 0.0, 1.0), (0.0, 0.0, 0.0), (0.02, 0.0, 0.0),
    (0.3333, 0.0, 0.35), (0.15000001, 0.0, 0.15), (7.0, 0.0, 1.0), (-3.0, 0.0, 0.0),
])
def test_thresholds_snap_to_five_percent_steps(value: float, low: float, expected: float) -> None:
    """A threshold becomes the nearest multiple of 0.05 in [low, 1] (exactly, as a 2-digit float)."""
    assert quantise(value, low) == expected


def test_thousands_of_distinct_thresholds_give_at_most_21_values() -> None:
    """10,000 distinct floats in [0, 1] map to the 21 steps 0, 0.05, ..., 1."""
    values = {quantise(i / 9999, 0.0) for i in range(10_000)}
    assert values == {round(k * 0.05, 2) for k in range(21)}


def test_non_finite_threshold_is_refused() -> None:
    """NaN or infinity is a ValueError naming the value, never a map."""
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="not a finite number"):
            quantise(bad, 0.0)


def test_gate_runs_at_most_limit_at_once_and_refuses_beyond_the_queue() -> None:
    """Two slots taken and two requests waiting: a fifth is refused at once (RenderBusy with
    Retry-After), the waiters run once a slot frees; renders and refusals are counted."""
    gate = RenderGate(limit=2, wait_s=60, max_waiting=2)
    release = threading.Event()
    running = threading.Semaphore(0)
    active, peak = [0], [0]
    lock = threading.Lock()

    def render() -> str:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        running.release()
        release.wait(30)
        with lock:
            active[0] -= 1
        return "svg"

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(gate.run(render)))
               for _ in range(4)]
    for t in threads:
        t.start()
    assert running.acquire(timeout=30) and running.acquire(timeout=30)  # two are rendering
    while gate._waiting < 2:  # the other two queue up
        threading.Event().wait(0.01)
    with pytest.raises(RenderBusy) as busy:
        gate.run(render)
    assert busy.value.retry_after_s == 60
    release.set()
    for t in threads:
        t.join(30)
    assert results == ["svg"] * 4
    assert peak[0] == 2
    assert (gate.renders, gate.refused) == (4, 1)


def test_gate_without_waiting_refuses_while_its_slot_is_taken() -> None:
    """wait_s = 0: a render while the only slot is taken is refused, one afterwards runs."""
    gate = RenderGate(limit=1, wait_s=0)
    inside = threading.Event()
    release = threading.Event()

    def slow() -> str:
        inside.set()
        release.wait(30)
        return "first"

    thread = threading.Thread(target=gate.run, args=(slow,))
    thread.start()
    assert inside.wait(30)
    with pytest.raises(RenderBusy, match="drawing 1 map"):
        gate.run(lambda: "second")
    release.set()
    thread.join(30)
    assert gate.run(lambda: "third") == "third"


@pytest.mark.parametrize(("text", "needle"), [
    ("[web]\nlogin_failures_per_minute = 0", "web.login_failures_per_minute"),
    ("[web]\nmap_renders = 0", "web.map_renders"),
    ("[web]\nmap_renders = \"many\"", "web.map_renders"),
    ("[web]\nmap_wait_s = -1", "web.map_wait_s"),
    ("[web]\nmap_wait_s = nan", "web.map_wait_s"),
    ("[web]\nmap_timeout_s = 0", "web.map_timeout_s"),
])
def test_bad_limits_in_the_config_name_their_key(tmp_path: Path, text: str, needle: str) -> None:
    """A limit out of range is a ConfigError naming the key (the CLI exits 2 with it)."""
    path = tmp_path / "limits.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load(path, environ={})
