"""How `pytest -n 2 --dist loadscope` (.ci/run) shares the test modules between its workers, and
what each worker did (printed at the end of the run).

A module's tests run on one worker (its module fixtures set up once), and the modules of
``SHARED_SETUP`` that share a costly session fixture or cache on the same worker (a session
fixture is set up once per worker). A worker that runs out of work takes the costliest unit
left (``COSTLY``, then xdist's order: more tests first), so the long units start early and
the run ends on short ones: neither worker idles long while the other finishes a long unit.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

SHARED_SETUP = {  # test modules sharing a costly session fixture or cache -> its name
    "tests/test_ingest_kafka.py": "bpic2012", "tests/test_mine_kafka.py": "bpic2012",  # bpic_topic
    # ... and pm4py's parse of BPIC 2012 (tests/shared_logs_support.py)
    "tests/test_group_postgres.py": "bpic2012", "tests/test_logfiles.py": "bpic2012",
    "tests/test_mining_oracle.py": "bpic2012",
}

COSTLY = {  # unit -> seconds: its tests' sum among the slowest 25 of a fresh-clone .ci/run
    "bpic2012": 515, "tests/test_alerts_cli.py": 121, "tests/test_alerts_workers.py": 105,
    "tests/test_alerts_frozen_baselines.py": 80, "tests/test_outages.py": 66,
    "tests/test_demo.py": 52, "tests/test_alerts_closed_loop.py": 50,
    "tests/test_alerts_detection_waits.py": 49, "tests/test_rdkafka.py": 33,
    "tests/test_web_schema.py": 32, "tests/test_hostile_ingest.py": 26,
    "tests/test_decode_paths.py": 22,
}
"""Scheduling hints only, never an assertion (from a run on a loaded machine, 8 Dec, 1366 s):
a unit missing here is scheduled after these in xdist's order, and a stale figure only
changes the order. The "load per xdist worker" section at the end of a run shows whether a
worker idled at the end: then move the long unit it waited for up here."""


def unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its module, or the SHARED_SETUP name of it."""
    module = nodeid.split("::")[0]
    return SHARED_SETUP.get(module, module)


def scheduler(config: pytest.Config, log: Any) -> Any:
    """The ``pytest_xdist_make_scheduler`` for ``--dist loadscope`` (None otherwise)."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            costliest = max(self.workqueue, key=lambda scope: COSTLY.get(scope, 0))
            self.workqueue.move_to_end(costliest, last=False)  # the first when none is known
            super()._assign_work_unit(node)

    return Scheduling(config, log)


class WorkerLoad:
    """On the xdist controller: per worker, the seconds its tests took (setup, call and
    teardown) and when its last one ended, since the session started."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.busy: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def report(self, report: pytest.TestReport) -> None:
        node = getattr(report, "node", None)  # set on the controller's copy of a worker's report
        if node is None:
            return
        worker = str(node.gateway.id)
        self.busy[worker] = self.busy.get(worker, 0.0) + report.duration
        self.last[worker] = time.monotonic() - self.started

    def lines(self) -> list[str]:
        return [f"{w}: {self.busy[w]:.0f}s in tests, its last test ended {self.last[w]:.0f}s "
                "after the start" for w in sorted(self.busy)]
