"""`backlight alerts evaluate` isolates each process: one whose stored events make its rules
fail is named (escaped) and the command exits 1, while the other processes are evaluated,
their alerts printed and kept, and every evaluation lease is released; SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import backlight
from pg import fresh_database

from backlight import jobs
from ingest.simulate import simulate
from schemas.event import CaseEvent
from storage import open_store

GOOD = ("payments", "claims")
BROKEN = "broken\x1b[31m"
"""A process whose stored events (a lifecycle no event may have, written straight into the
store, as before decode refused it) make the rules' preparation fail."""


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Two ordinary simulated processes and the broken one, each owned and never reviewed
    (so each would fire `stale_review`)."""
    url = (f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite"
           else fresh_database(request.getfixturevalue("postgres_url")))
    store = open_store(url)
    try:
        for n, name in enumerate(GOOD):
            store.write(simulate(name, 20, seed=n, start=jobs.SIMULATION_START).events)
        store.write([CaseEvent(f"b-{i}", BROKEN, "b", "<script>alert(1)</script>",
                               1_770_000_000_000_000 + i, "<b>paused</b>", None, None, None)
                     for i in range(3)])
    finally:
        store.close()
    text = f'[store]\nurl = "{url}"\n\n'
    for name in (*GOOD, BROKEN):
        text += (f"[[processes]]\nname = {json.dumps(name)}\n"
                 'owner = "ann@example.com"\n\n')
    path = tmp_path / "backlight.toml"
    path.write_text(text)
    return path


def test_one_broken_process_leaves_the_others_evaluated(config: Path) -> None:
    """The good processes' alerts are printed and kept, the broken one is named escaped on
    stderr, the exit code is 1; a second run evaluates the good ones again (leases released)."""
    now = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for round_ in range(2):
        out = backlight("alerts", "evaluate", "--config", str(config), "--format", "json",
                        "--now", now, check=False)
        assert out.returncode == 1, out.stderr
        alerts = json.loads(out.stdout)
        firing = {(a["rule"], a["process"]) for a in alerts if a["status"] == "firing"}
        assert firing >= {("stale_review", name) for name in GOOD}, round_
        assert {a["process"] for a in alerts} == set(GOOD)
        assert "\x1b" not in out.stderr
        assert "broken\\x1b[31m: could not evaluate it:" in out.stderr
        assert "paused" in out.stderr
        assert ("1 process(es) could not be evaluated: broken\\x1b[31m (the others were)"
                in out.stderr)
        assert "another worker is evaluating" not in out.stderr, "a lease was not released"
        assert "Traceback" in out.stderr  # logged with its traceback, for the operator
    listed = json.loads(backlight("alerts", "list", "--config", str(config), "--format",
                                  "json").stdout)
    assert {a["process"] for a in listed["alerts"]} == set(GOOD)


def test_without_the_broken_process_evaluate_exits_0(config: Path) -> None:
    """Evaluating only the good processes is a plain success: exit 0, nothing named."""
    out = backlight("alerts", "evaluate", "--config", str(config), "--format", "json",
                    "--dry-run", *(f"--process={name}" for name in GOOD))
    assert {a["process"] for a in json.loads(out.stdout)} == set(GOOD)
    assert "could not evaluate" not in out.stderr
