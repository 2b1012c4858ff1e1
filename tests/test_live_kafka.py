"""The live map kept by the real consumer equals the DFG mined from the store, even when the
events arrive out of order, late and duplicated, and even when a subscriber keeps failing."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import write_config

from backlight.config import load
from backlight.jobs import consume, live_maps
from ingest.publish import encode
from ingest.simulate import simulate
from ingest.subscribers import Backoff, Subscription
from ingest.transport import KafkaSink, ensure_topics
from mining.dfg import discover_dfg
from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import open_store

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


class Flaky:
    """A subscriber behind a downstream that refuses some calls (before taking anything in):
    every ``every``-th call, or every call from ``fail_from`` on. It keeps a live map and the
    event ids it took, in order."""

    def __init__(self, settings_path: Path, every: int = 0, fail_from: int = 0) -> None:
        self.live = live_maps(load(settings_path))
        self.every, self.fail_from = every, fail_from
        self.calls = 0
        self.ids: list[str] = []

    def __call__(self, events: Sequence[CaseEvent],
                 origins: Sequence[Coordinates | None]) -> None:
        self.calls += 1
        if (self.every and self.calls % self.every == 0) or (
                self.fail_from and self.calls >= self.fail_from):
            raise ConnectionError("chat endpoint answered 503")
        self.live(events, origins)
        self.ids.extend(e.event_id for e in events)


def send(bootstrap: str, topic: str, events: Sequence[CaseEvent]) -> None:
    """Publish events keyed by case id and wait for the broker to have them."""
    sink = KafkaSink(bootstrap)
    for event in events:
        sink.send(topic, encode(event), key=event.case_id.encode())
    sink.flush()
    sink.close()


def test_failing_subscriber_neither_stops_ingest_nor_loses_events(
        kafka_bootstrap: str, tmp_path: Path, unique: str) -> None:
    """A subscriber failing on every third call, fed in batches of 97: the consume run stores
    every event exactly once, and the subscriber's live map still equals the DFG of the store."""
    topic = f"flaky.{unique}"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, tmp_path / "s.db",
                       [(topic, "onboarding")], f"g-{unique}")
    ensure_topics(kafka_bootstrap, [topic])
    events = simulate("onboarding", 150, seed=4).events
    rng = random.Random(3)
    stream = events + rng.sample(events, len(events) // 10)
    rng.shuffle(stream)
    send(kafka_bootstrap, topic, stream)

    flaky = Flaky(cfg, every=3)
    sub = Subscription("flaky", flaky, batch_limit=97, retry=Backoff(0.05, 0.2))
    live = live_maps(load(cfg))
    stats = consume(load(cfg), exit_when_idle=2.0, live=live, subscriptions=[sub])
    store = open_store(load(cfg).store.url)
    frame = store.events("onboarding")
    assert frame.height == len(events) == frame["event_id"].n_unique() == stats.stored
    assert stats.drained and stats.subscribers["flaky"].failures >= 5
    assert flaky.ids == [e.event_id for _, e, _ in store.since(0, len(events) + 1)]
    batch = discover_dfg(frame)
    for state in (flaky.live["onboarding"], live["onboarding"]):
        assert dict(state.edge_counts) == batch.counts()
        assert dict(state.start_activities) == batch.start_activities
        assert dict(state.end_activities) == batch.end_activities
    store.close()


def test_restart_catches_a_durable_subscriber_up_from_its_mark(
        kafka_bootstrap: str, tmp_path: Path, unique: str) -> None:
    """A durable subscriber that breaks after 3 batches leaves a run behind (the run still
    stores everything); the next run, with it repaired, hands it exactly what it missed and
    what came since: over both runs it got every stored event once, in store order."""
    topic = f"durable.{unique}"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, tmp_path / "s.db",
                       [(topic, "claims")], f"g-{unique}")
    ensure_topics(kafka_bootstrap, [topic])
    events = simulate("claims", 120, seed=6).events
    half = len(events) // 2
    send(kafka_bootstrap, topic, events[:half])
    broken = Flaky(cfg, fail_from=4)
    def recorder(subscriber: Flaky) -> Subscription:
        return Subscription("recorder", subscriber, durable=True, batch_limit=100,
                            retry=Backoff(0.05, 0.2))

    stats = consume(load(cfg), exit_when_idle=2.0, drain_timeout_s=1.0,
                    subscriptions=[recorder(broken)])
    store = open_store(load(cfg).store.url)
    handled = len(broken.ids)
    assert stats.stored == half and not stats.drained and 0 < handled <= 300
    assert stats.subscribers["recorder"].lag == half - handled
    assert store.subscriber_mark("recorder") == handled
    store.close()

    send(kafka_bootstrap, topic, events[half // 2:])  # the rest, and a quarter again
    repaired = Flaky(cfg)
    stats = consume(load(cfg), exit_when_idle=2.0,
                    subscriptions=[recorder(repaired)])
    assert stats.stored == len(events) - half and stats.drained
    store = open_store(load(cfg).store.url)
    assert broken.ids + repaired.ids == [e.event_id for _, e, _ in store.since(0, 10**6)]
    assert len(broken.ids + repaired.ids) == len(events)
    assert store.subscriber_mark("recorder") == len(events)
    store.close()
