"""Helpers for the benchmarks: sizes, peak memory of a running process, configs on a PostgreSQL
store, many simulated events of one process (tests/test_bench_group.py), and a store of BPIC
2012 several times over (the read-model and alert-history benchmarks), an alert round in its
own process, a free port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from conftest import ROOT, write_config
from msgspec.structs import replace

from ingest.logfiles import read_log
from ingest.simulate import simulate
from mining.read_model import DAY_US
from schemas.event import CaseEvent
from storage import SQLiteStore

EVENTS_PER_CASE = 7.5
"""About how many events a simulated onboarding case has (to ask for cases, not events)."""


def scale() -> float:
    """BACKLIGHT_BENCH_SCALE (default 1): every size of the benchmark is multiplied by it,
    e.g. 0.02 to check the benchmark itself in a minute."""
    return float(os.environ.get("BACKLIGHT_BENCH_SCALE", "1"))


def scaled(events: int) -> int:
    return max(1_000, round(events * scale()))


def peak_rss_kib(pid: int) -> int:
    """The high-water mark of the process's resident memory so far (VmHWM), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise AssertionError(f"no VmHWM for pid {pid}")
    return int(found.group(1))


def store_config(path: Path, bootstrap: str, store_url: str, topic: str, process: str,
                 group: str) -> Path:
    """conftest's write_config for one (topic, process), with the store at ``store_url``."""
    return write_config(path, bootstrap, store_url, [(topic, process)], group)


def event_chunks(process: str, events: int, cases_per_chunk: int = 20_000,
                 first_chunk: int = 0, start: datetime | None = None) -> Iterator[list[CaseEvent]]:
    """At least ``events`` simulated events of one process, a simulation of
    ``cases_per_chunk`` cases at a time (seed = chunk number; each from ``start``, the
    simulator's default when None), the ids of each chunk prefixed with its number so that
    no two chunks share a case or an event id. The last chunk is cut so that exactly
    ``events`` come out."""
    left, chunk = events, first_chunk
    while left > 0:
        sim = simulate(process, cases_per_chunk, seed=chunk, start=start)
        out = [replace(e, event_id=f"{chunk}.{e.event_id}", case_id=f"{chunk}.{e.case_id}")
               for e in sim.events[:left]]
        left -= len(out)
        chunk += 1
        yield out


def wait_until(what: str, check: Callable[[], bool], timeout_s: float,
               every_s: float = 0.5) -> float:
    """Poll ``check`` until true; return the monotonic time it first was (fail after
    ``timeout_s``: a generous bound that only proves nothing hangs)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(every_s)
    return time.monotonic()


def bpic_copies(path: Path, bpic_log: Path, copies: int, shift_days: int) -> list[CaseEvent]:
    """BPIC 2012 as "loans" ``copies`` times over in a SQLite store at ``path``, each copy's
    cases renamed and shifted by ``shift_days`` after the one before; the events as stored."""
    bpic = list(read_log(bpic_log, "loans"))
    store = SQLiteStore(path)
    stored: list[CaseEvent] = []
    try:
        for copy in range(copies):
            shift = copy * shift_days * DAY_US
            batch = [replace(e, event_id=f"{copy}-{e.event_id}", case_id=f"{copy}-{e.case_id}",
                             time_us=e.time_us + shift) for e in bpic]
            for start in range(0, len(batch), 20_000):
                store.write(batch[start:start + 20_000])
            stored += batch
    finally:
        store.close()
    return stored


def evaluate(config: Path, now: str) -> tuple[float, float]:
    """`backlight alerts evaluate --dry-run` in its own process: seconds and peak MiB."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "backlight", "--log-level", "WARNING",
                             "alerts", "evaluate", "--config", str(config), "--dry-run",
                             "--now", now, "--format", "json"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read() if proc.stderr else ""
    return took, usage.ru_maxrss / 1024


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Runs the CLI and prints its peak RSS. VmHWM is the high-water mark of this process's own
# address space; ru_maxrss is not usable here, as Linux carries it over fork and exec from
# the parent (a benchmark holding a million simulated events would be measured instead).
PEAK_RSS = """
import sys
from backlight.cli import main
sys.argv = ["backlight", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("peak_rss_kib", hwm.split()[1], file=sys.stderr)
"""
