"""A Kafka broker that tests stop and start again on its own data and ports (the session's
shared broker is never stopped): the ``own_broker`` fixture and ``relaunch``."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from ingest.broker import READY_LINE, BrokerState, LocalBroker, resolve_jars


def relaunch(broker: LocalBroker, stopped: BrokerState, timeout: float = 120) -> None:
    """Start the stopped broker again on its own data and ports, as a restarted host would
    (``LocalBroker.start`` would format a fresh one on new ports)."""
    directory = Path(stopped.directory)
    jvm = ["java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
           f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}",
           "-cp", f"{resolve_jars(stopped.version)}/*"]
    with broker.log_file.open("wb") as log:
        proc = subprocess.Popen([*jvm, "kafka.Kafka", str(directory / "server.properties")],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=directory)
    state = BrokerState(**{**asdict(stopped), "pid": proc.pid})
    (directory / "broker.json").write_text(json.dumps(asdict(state)))
    deadline = time.monotonic() + timeout
    while READY_LINE not in broker.log_file.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, broker.log_file.read_text()
        time.sleep(0.25)


@pytest.fixture(scope="session")
def _stoppable_broker(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalBroker, BrokerState]]:
    """One local broker for every test that stops it (started once: a start costs seconds)."""
    broker = LocalBroker(tmp_path_factory.mktemp("own-kafka"))
    state = broker.start()
    try:
        yield broker, state
    finally:
        broker.stop()


@pytest.fixture()
def own_broker(_stoppable_broker: tuple[LocalBroker, BrokerState]) -> tuple[
        LocalBroker, BrokerState]:
    """A local broker the test may stop and relaunch (the session's shared broker is never
    stopped): running when the test starts, on its own data and ports, shared only with the
    other tests that stop a broker (each on topics and groups of its own)."""
    broker, first = _stoppable_broker
    if broker.state() is None:  # a test before this one failed with the broker stopped
        relaunch(broker, first)
    state = broker.state()
    assert state is not None, broker.log_file.read_text()
    return broker, state
