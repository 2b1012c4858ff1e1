"""A Kafka broker of a test's own, stopped and started again on its own data and ports (the
session's shared broker is never stopped): the ``own_broker`` fixture and ``relaunch``."""

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


@pytest.fixture()
def own_broker(tmp_path: Path) -> Iterator[tuple[LocalBroker, BrokerState]]:
    """A local broker for this test only (the session's shared broker is never stopped)."""
    broker = LocalBroker(tmp_path / "kafka")
    state = broker.start()
    try:
        yield broker, state
    finally:
        broker.stop()
