"""An alert round reads a bounded history (alerts/reach.py): the cases active in the last
``[alerts] history`` before the process's latest event, and whatever the rules' windows reach;
on two years of a process it finds what the whole history finds, reading far less of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from alerts.reach import history_start, rules_reach
from alerts.registry import ProcessDefinition
from backlight import alerting
from backlight.config import Settings, load
from ingest.simulate import Anomalies, Bottleneck, simulate
from storage import open_store

START = datetime(2024, 6, 3)  # two years of claims, Amsterdam time, up to May 2026
ONSET = datetime(2026, 3, 2, 9)  # Assessment waits five times as long from here on
NOW = datetime(2026, 4, 30, 18, tzinfo=UTC)


def test_the_rules_reach_their_longest_window() -> None:
    """With the default rules the drift rules reach furthest: 60 days of baseline plus the 180
    days a drift may be old; a rule switched off reaches no further than the others."""
    reach = rules_reach(ProcessDefinition(name="p"), NOW)
    assert NOW - timedelta(days=245) <= reach <= NOW - timedelta(days=240)
    quiet = ProcessDefinition(name="p").rules.merged(
        {r: {"enabled": False} for r in ("bottleneck", "throughput", "handoff")})
    shorter = rules_reach(ProcessDefinition(name="p", rules=quiet), NOW)
    assert NOW - timedelta(days=100) < shorter < NOW - timedelta(days=80)


def test_history_counts_back_from_the_latest_event() -> None:
    """A process quiet for two years is still read over the year before its last event."""
    latest = NOW - timedelta(days=730)
    start = history_start(ProcessDefinition(name="p"), NOW, latest, timedelta(days=365))
    assert start == latest - timedelta(days=365)
    assert history_start(ProcessDefinition(name="p"), NOW, None, timedelta(days=365)) <= (
        NOW - timedelta(days=365))


@pytest.fixture(scope="module")
def two_years(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of two years of claims (95k events) with a bottleneck in its last two months."""
    path = tmp_path_factory.mktemp("history") / "store.db"
    sim = simulate("claims", 12_000, seed=7, start=START,
                   anomalies=Anomalies(bottleneck=Bottleneck("Assessment", ONSET)))
    store = open_store(f"sqlite:///{path}")
    try:
        store.write(sim.events)
    finally:
        store.close()
    return path


def settings(path: Path, history: str) -> Settings:
    """The store with claims configured (owned, reviewed now) and the round's history."""
    text = (f'[store]\nurl = "sqlite:///{path}"\n[alerts]\nhistory = "{history}"\n'
            '[[processes]]\nname = "claims"\nowner = "ann@example.com"\n'
            f'last_reviewed = "{NOW.date()}"\nend_activities = ["Close claim"]\n')
    config = path.parent / f"{history.replace(' ', '-')}.toml"
    config.write_text(text)
    return load(config, environ={})


def test_a_bounded_round_finds_what_the_whole_history_finds(two_years: Path) -> None:
    """A year of history and ten years (the whole store) give the same findings (the same
    words for those that open alerts), the injected bottleneck among them; the bounded round
    read about half of the events."""
    bounded = alerting.evaluate(settings(two_years, "365 days"), now=NOW, dry_run=True)
    whole = alerting.evaluate(settings(two_years, "3650 days"), now=NOW, dry_run=True)
    assert not bounded.failed and not whole.failed
    keys = sorted(f.key for f in whole.findings)
    assert any(f.rule == "bottleneck" and "Assessment" in f.subject for f in whole.findings), keys
    assert sorted(f.key for f in bounded.findings) == keys
    # Findings that open alerts say the same; one that only holds an open alert (hysteresis:
    # a stuck step's cases beyond its "far longer than normal" point) states that point, which
    # the longer history estimates from more waits.
    assert [f.summary for f in sorted(bounded.findings, key=lambda f: f.key) if f.opens] == [
        f.summary for f in sorted(whole.findings, key=lambda f: f.key) if f.opens]
    store = open_store(f"sqlite:///{two_years}")
    try:
        definition = ProcessDefinition(name="claims")
        read = alerting.history_of(store, definition, NOW, timedelta(days=365))
        everything = store.events("claims", until=NOW)
    finally:
        store.close()
    assert 0.3 * everything.height < read.height < 0.7 * everything.height
    whole_cases = everything.filter(pl.col("case_id").is_in(read["case_id"].unique().implode()))
    assert whole_cases.height == read.height  # each case read is read whole
