"""Shared fixtures: a real Kafka broker for the session, the public logs, config files."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import scheduling_support
from broker_support import own_broker  # noqa: F401 (a fixture: a broker a test may stop)

from backlight import logs
from ingest.simulate import Anomalies, simulate
from mining.frame import SCHEMA, check_frame
from schemas.event import CaseEvent

logs.configure()  # structlog's loggers log through the standard library, as under the CLI

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_file(relative: str) -> Path:
    """A file from ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"../shared/data/{relative} is absent: the public event logs live beside "
                    "the repo (see ../shared/data/README.md)")
    return path


def read_store(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` on a SQLite store that another process or thread writes: none while
    the writer has not yet created the file or the tables ``sql`` reads (a consumer starting
    up creates the file before its tables: reading then would fail with `no such table`).
    Never creates the file itself."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if str(exc).startswith("no such table"):
                return []
            raise


def stored_count(db: Path) -> int:
    """How many events the SQLite store ``db`` holds so far (0 before its writer created it)."""
    rows = read_store(db, "SELECT COUNT(*) FROM events")
    return int(rows[0][0]) if rows else 0


def event_frame(events: Sequence[CaseEvent]) -> pl.DataFrame:
    """Case events as the store hands them to mining: a checked frame, seq = list order."""
    rows = [(e.event_id, e.case_id, e.activity, e.time_us, e.lifecycle, e.resource, e.team,
             e.attributes, seq) for seq, e in enumerate(events)]
    frame = pl.DataFrame(rows, schema={**SCHEMA, "timestamp": pl.Int64()}, orient="row")
    return check_frame(frame.with_columns(pl.col("timestamp").cast(SCHEMA["timestamp"])))


def sim_frame(process: str, cases: int, seed: int, anomalies: Anomalies | None = None) -> tuple[
        pl.DataFrame, dict[str, Any]]:
    """A simulated process as an event frame (seq is publication order) and its ground truth."""
    sim = simulate(process, cases, seed=seed, anomalies=anomalies or Anomalies())
    return event_frame(sim.events), sim.ground_truth


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist with ``--dist loadscope``: a module's tests on one worker, the modules
    sharing a costly session fixture on one worker, the costliest first
    (tests/scheduling_support.py)."""
    return scheduling_support.scheduler(config, log)


_LOAD = scheduling_support.WorkerLoad()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _LOAD.report(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Under xdist: what each worker did, to see whether one idled while the other finished."""
    if _LOAD.busy:
        terminalreporter.section("load per xdist worker")
        for line in _LOAD.lines():
            terminalreporter.write_line(line)


def _docker_answers() -> bool:
    try:
        from testcontainers.core.docker_client import DockerClient

        DockerClient().client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka: testcontainers where a Docker engine answers, else a local KRaft node."""
    if os.environ.get("BACKLIGHT_TEST_BOOTSTRAP"):
        yield os.environ["BACKLIGHT_TEST_BOOTSTRAP"]
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from ingest.broker import LocalBroker

    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    state = broker.start()
    try:
        yield state.bootstrap
    finally:
        broker.stop()


BPIC_EVENTS, BPIC_CASES = 262_200, 13_087


@pytest.fixture(scope="session")
def bpic_topic(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """BPIC 2012 replayed once per session with `backlight replay` into a topic of its own, as
    process "bpic2012"; the tests only read it, each in a consumer group of its own."""
    log = shared_file("logs/bpic2012.xes.gz")
    topic = f"bpic.{uuid.uuid4().hex[:8]}"
    work = tmp_path_factory.mktemp("bpic")
    cfg = write_config(work / "b.toml", kafka_bootstrap, work / "unused.db",
                       [(topic, "bpic2012")], "unused")
    out = backlight("replay", str(log), "--process", "bpic2012", "--config", str(cfg))
    assert f"published {BPIC_EVENTS} events" in out.stdout
    return topic


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (tests/pg.py); the URL of its admin database.
    Where none is installed: skipped, but under CI (env CI set) a failure."""
    if os.environ.get("BACKLIGHT_TEST_POSTGRES"):
        yield os.environ["BACKLIGHT_TEST_POSTGRES"]
        return
    import pg

    if pg.bindir() is None:
        why = "PostgreSQL is not installed (no initdb): bash .ci/install adds Debian's postgresql"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    with pg.server() as url:
        yield url


@pytest.fixture()
def unique() -> str:
    """A short unique suffix for topic and group names, so tests never share state."""
    return uuid.uuid4().hex[:8]


def write_config(path: Path, bootstrap: str, store: Path | str, sources: list[tuple[str, str]],
                 group: str, extra: str = "", kafka: str = "") -> Path:
    """Write a backlight.toml with the given (topic, process) sources; ``store`` is a SQLite
    file or a store URL (``postgresql://...``); ``kafka``: more lines of ``[kafka]``."""
    url = store if isinstance(store, str) and "://" in store else f"sqlite:///{store}"
    text = (f'[kafka]\nbootstrap_servers = "{bootstrap}"\ngroup_id = "{group}"\n'
            f'session_timeout_ms = 6000\n{kafka}\n[store]\nurl = "{url}"\n\n')
    for topic, process in sources:
        text += f'[[sources]]\ntopic = "{topic}"\nprocess = "{process}"\n\n'
    path.write_text(text + extra)
    return path


def backlight(*args: str, timeout: float = 600, check: bool = True,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "backlight", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          cwd=ROOT, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"backlight {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def popen_backlight(*args: str) -> Iterator[subprocess.Popen[str]]:
    """Start the CLI in the background; make sure it is gone afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "backlight", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
