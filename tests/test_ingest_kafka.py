"""Ingest end to end on a real Apache Kafka broker: round trips, replay, crash safety."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import (
    BPIC_CASES,
    BPIC_EVENTS,
    backlight,
    popen_backlight,
    shared_file,
    stored_count,
    write_config,
)
from shared_logs_support import shared_events

from backlight.config import load
from backlight.jobs import simulate
from ingest.simulate import simulate as simulate_cases

pytestmark = pytest.mark.kafka
BPIC = "bpic2012.xes.gz"


def stored_rows(db: Path) -> list[tuple[object, ...]]:
    """Every stored event as (event_id, process, case, activity, time_us, lifecycle, resource,
    team, attributes)."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT event_id, process, case_id, activity, time_us, lifecycle, resource, team,"
            " attributes FROM events").fetchall()


def test_three_simulated_sources_round_trip(kafka_bootstrap: str, tmp_path: Path,
                                           unique: str) -> None:
    """simulate -> consume: the store holds exactly the events produced, for all three sources."""
    sources = [(f"{p}.{unique}", p) for p in ("onboarding", "payments", "claims")]
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, tmp_path / "s.db", sources,
                       f"g-{unique}")
    settings = load(cfg)
    simulate(settings, ["onboarding", "payments", "claims"], 150, seed=3)
    out = backlight("consume", "--config", str(cfg), "--exit-when-idle", "2")
    assert "dead-lettered" in out.stdout
    expected = [e for p in ("onboarding", "payments", "claims")
                for e in simulate_cases(p, 150, seed=3).events]
    want = sorted((e.event_id, e.process, e.case_id, e.activity, e.time_us, e.lifecycle,
                   e.resource, e.team, e.attributes) for e in expected)
    assert sorted(stored_rows(tmp_path / "s.db")) == want


@pytest.mark.shared_data
def test_bpic2012_replay_is_stored_exactly_once(bpic_topic: str, kafka_bootstrap: str,
                                               tmp_path: Path, unique: str) -> None:
    """BPIC 2012 replayed -> 262,200 events in 13,087 cases, right activities and times;
    replaying it again (into a topic of its own: the session's is shared) adds nothing."""
    log = shared_file(f"logs/{BPIC}")
    db = tmp_path / "s.db"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, db, [(bpic_topic, "bpic2012")],
                       f"g-{unique}")
    backlight("consume", "--config", str(cfg), "--exit-when-idle", "2")
    rows = stored_rows(db)
    assert len(rows) == BPIC_EVENTS
    assert len({r[2] for r in rows}) == BPIC_CASES
    truth = Counter((e.case_id, e.activity, e.time_us, e.lifecycle)
                    for e in shared_events(BPIC, "bpic2012"))
    assert Counter((r[2], r[3], r[4], r[5]) for r in rows) == truth

    cfg = write_config(tmp_path / "again.toml", kafka_bootstrap, db,
                       [(f"bpic-again.{unique}", "bpic2012")], f"g-{unique}")
    backlight("replay", str(log), "--process", "bpic2012", "--config", str(cfg))
    again = backlight("consume", "--config", str(cfg), "--exit-when-idle", "2")
    assert f"0 stored, {BPIC_EVENTS} already stored" in again.stdout
    assert len(stored_rows(db)) == BPIC_EVENTS


@pytest.mark.shared_data
def test_kill_9_during_ingest_loses_and_duplicates_nothing(bpic_topic: str, kafka_bootstrap: str,
                                                           tmp_path: Path, unique: str) -> None:
    """kill -9 the consumer three times mid-ingest, restart: the store equals the produced set."""
    db = tmp_path / "s.db"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, db, [(bpic_topic, "bpic2012")],
                       f"g-{unique}", extra="")
    counts = []
    for _ in range(3):
        with popen_backlight("--log-level", "WARNING", "consume", "--config", str(cfg)) as proc:
            before = stored_count(db)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # wait until this run has stored something new
                time.sleep(0.3)
                if stored_count(db) > before + 5000:
                    break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        counts.append(stored_count(db))
    assert counts[0] < counts[1] < counts[2] < BPIC_EVENTS, counts
    backlight("consume", "--config", str(cfg), "--exit-when-idle", "2")
    rows = stored_rows(db)
    ids = Counter(r[0] for r in rows)
    assert len(rows) == BPIC_EVENTS and max(ids.values()) == 1
    produced = sorted(e.event_id for e in shared_events(BPIC, "bpic2012"))
    assert sorted(ids) == produced


@pytest.mark.shared_data
def test_rebalance_between_two_consumers_keeps_each_event_once(
        bpic_topic: str, kafka_bootstrap: str, tmp_path: Path, unique: str) -> None:
    """Two consumers share the partitions; one is killed mid-way and the other takes its
    partitions over: the store holds every produced event exactly once."""
    db = tmp_path / "s.db"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, db, [(bpic_topic, "bpic2012")],
                       f"g-{unique}")
    args = ("--log-level", "WARNING", "consume", "--config", str(cfg))
    with popen_backlight(*args) as first, popen_backlight(*args, "--exit-when-idle", "3") as other:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if stored_count(db) > 60_000:
                break
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = stored_count(db)
        assert other.wait(timeout=300) == 0, other.stderr.read() if other.stderr else ""
    rows = stored_rows(db)
    assert killed_at < BPIC_EVENTS
    ids = Counter(r[0] for r in rows)
    assert len(rows) == BPIC_EVENTS and max(ids.values()) == 1
    assert sorted(ids) == sorted(e.event_id for e in shared_events(BPIC, "bpic2012"))
