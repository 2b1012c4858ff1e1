"""The live map kept by the real consumer equals the DFG mined from the store, even when the
events arrive out of order, late and duplicated."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import write_config

from backlight.config import load
from backlight.jobs import consume, live_maps
from ingest.publish import encode
from ingest.simulate import simulate
from ingest.store import open_store
from ingest.transport import KafkaSink, ensure_topics
from mining.dfg import discover_dfg

pytestmark = pytest.mark.kafka


def test_live_map_equals_store_dfg_under_shuffled_duplicated_delivery(
        kafka_bootstrap: str, tmp_path: Path, unique: str) -> None:
    """Two processes' events shuffled (late, out of order) with 10% re-sent: live == batch."""
    topics = {"onboarding": f"live-onb.{unique}", "claims": f"live-clm.{unique}"}
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, tmp_path / "s.db",
                       [(t, p) for p, t in topics.items()], f"g-{unique}",
                       extra="[live]\nidle_horizon_days = 3650\n")
    settings = load(cfg)
    ensure_topics(kafka_bootstrap, list(topics.values()))
    rng = random.Random(11)
    sink = KafkaSink(kafka_bootstrap)
    for process, topic in topics.items():
        events = simulate(process, 120, seed=5).events
        stream = events + rng.sample(events, len(events) // 10)
        rng.shuffle(stream)
        for event in stream:
            sink.send(topic, encode(event), key=event.case_id.encode())
    sink.flush()
    sink.close()

    live = live_maps(settings)
    stats = consume(settings, exit_when_idle=2.0, live=live)
    assert stats.duplicates > 0
    store = open_store(settings.store.url)
    for process in topics:
        batch = discover_dfg(store.events(process))
        state = live[process]
        assert dict(state.edge_counts) == batch.counts()
        assert dict(state.start_activities) == batch.start_activities
        assert dict(state.end_activities) == batch.end_activities
        for edge in batch.edges:
            assert state.mean_waits[(edge.source, edge.target)] == pytest.approx(edge.wait.mean)
    store.close()


def test_live_map_after_restart_covers_the_whole_store(kafka_bootstrap: str, tmp_path: Path,
                                                       unique: str) -> None:
    """A consumer started again on a non-empty store starts its live map from the store, so
    the live map still equals the DFG of everything stored (and re-sent events are not new)."""
    topic = f"live-restart.{unique}"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, tmp_path / "s.db",
                       [(topic, "payments")], f"g-{unique}")
    settings = load(cfg)
    ensure_topics(kafka_bootstrap, [topic])
    events = simulate("payments", 200, seed=8).events
    half = len(events) // 2
    for part in (events[:half], events[half // 2:]):  # the second run re-sends a quarter
        sink = KafkaSink(kafka_bootstrap)
        for event in part:
            sink.send(topic, encode(event), key=event.case_id.encode())
        sink.flush()
        sink.close()
        live = live_maps(settings)
        consume(settings, exit_when_idle=2.0, live=live)
    store = open_store(settings.store.url)
    frame = store.events("payments")
    assert frame.height == len(events)
    assert dict(live["payments"].edge_counts) == discover_dfg(frame).counts()
    assert live["payments"].events == len(events)
    store.close()
