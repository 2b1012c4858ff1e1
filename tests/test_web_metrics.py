"""Prometheus /metrics and /readyz on a real server: counters equal the consumer's own counts
after a known ingest from a real broker, store-derived gauges equal the alert state and the
outbox, and readiness follows the store and the in-process consumer's lag."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_config
from prometheus_client.parser import text_string_to_metric_families
from web_support import evaluate_alerts, fill_store

from backlight import jobs
from backlight.config import Settings, load
from backlight.metrics import Metrics
from backlight.web.server import running
from ingest.consumer import BatchReport, Consumer, ConsumerStats
from ingest.transport import KafkaSink, KafkaSource, ensure_topics
from schemas.alerts import Change
from schemas.decode import SourceSpec
from storage import Outbox, SQLiteAlertState, SQLiteStore

VALID, RESENT = 150, 12
BAD = {"invalid_json": 7, "missing_field": 5}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str) -> Samples:
    """GET /metrics and parse it with Prometheus's own text-format parser: every sample by
    (name, sorted labels)."""
    response = httpx.get(f"{base}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of one metric, keyed by the values of the given labels."""
    return {tuple(dict(lbl)[k] for k in labels): v
            for (n, lbl), v in samples.items() if n == name}


def event(i: int) -> dict[str, Any]:
    return {"event_id": f"m-{i}", "case_id": f"c-{i % 31}", "activity": f"Step {i % 5}",
            "timestamp": f"2026-03-04T09:{i % 60:02d}:00+01:00", "resource": "u-1"}


def publish_known(bootstrap: str, topic: str) -> None:
    """VALID events, RESENT of them a second time, and BAD malformed messages by reason."""
    ensure_topics(bootstrap, [topic, f"{topic}.dlq"], partitions=3)
    sink = KafkaSink(bootstrap)
    values = [json.dumps(event(i)).encode() for i in range(VALID)]
    values += values[:RESENT]
    values += [b'{"event_id": "broken' + str(i).encode() for i in range(BAD["invalid_json"])]
    values += [json.dumps({k: v for k, v in event(1000 + i).items() if k != "activity"}).encode()
               for i in range(BAD["missing_field"])]
    for n, value in enumerate(values):
        sink.send(topic, value, key=str(n).encode())
    sink.flush()
    sink.close()


def settings_for(tmp_path: Path, bootstrap: str, topic: str | None, group: str,
                 extra: str = "") -> Settings:
    sources = [(topic, "claims")] if topic else []
    return load(write_config(tmp_path / "b.toml", bootstrap, tmp_path / "s.db", sources, group,
                             extra), environ={})


@pytest.mark.kafka
def test_metrics_equal_the_consumers_counts_after_a_known_ingest(
        kafka_bootstrap: str, tmp_path: Path, unique: str) -> None:
    """Not ready until the in-process consumer reports its lag; after it caught up, /metrics
    counts exactly what the consumer counted (consumed, stored, duplicates, dead letters by
    reason), the store holds what was stored, every partition's lag is 0, and it is ready."""
    topic = f"metrics.{unique}"
    publish_known(kafka_bootstrap, topic)
    settings = settings_for(tmp_path, kafka_bootstrap, topic, f"g-{unique}")
    metrics = Metrics()
    result: list[ConsumerStats] = []
    with running(settings, metrics=metrics) as base:
        # Hold the store's write lock, so the consumer cannot get past opening the store.
        blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        thread = threading.Thread(target=lambda: result.append(
            jobs.consume(settings, 1.0, metrics=metrics)), daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not metrics.consuming and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = httpx.get(f"{base}/readyz", timeout=30)
        blocker.execute("ROLLBACK")
        blocker.close()
        thread.join(180)
        assert not thread.is_alive() and result, "the consumer did not finish"
        ready = httpx.get(f"{base}/readyz", timeout=30)
        samples = scrape(base)
    stats = result[0]

    assert waiting.status_code == 503
    assert waiting.json()["reason"] == "the consumer has not reported its lag yet"
    assert ready.status_code == 200
    assert ready.json()["lag"] == 0 and ready.json()["consumer"] == "stopped"

    assert stats.messages == VALID + RESENT + sum(BAD.values())
    assert by(samples, "backlight_events_consumed_total", "topic") == {(topic,): stats.messages}
    assert by(samples, "backlight_events_stored_total", "topic") == {(topic,): VALID}
    assert stats.stored == VALID
    assert by(samples, "backlight_events_duplicate_total", "topic") == {
        (topic,): stats.duplicates}
    assert stats.duplicates == RESENT
    assert by(samples, "backlight_dead_letters_total", "topic", "reason") == {
        (topic, reason): n for reason, n in stats.dead_letter_reasons.items()}
    assert dict(stats.dead_letter_reasons) == BAD
    assert by(samples, "backlight_batch_seconds_count") == {(): stats.batches}
    assert by(samples, "backlight_store_write_seconds_count") == {(): stats.batches}
    assert 0 < by(samples, "backlight_store_write_seconds_sum")[()] <= by(
        samples, "backlight_batch_seconds_sum")[()]  # the store's share of each batch

    store = SQLiteStore(tmp_path / "s.db")
    counts = {c.process: c.events for c in store.counts()}
    store.close()
    assert by(samples, "backlight_store_events", "process") == {("claims",): counts["claims"]}
    assert counts["claims"] == VALID
    assert by(samples, "backlight_consumer_lag", "topic", "partition") == {
        (topic, "0"): 0, (topic, "1"): 0, (topic, "2"): 0}


@pytest.mark.kafka
def test_a_failing_observer_never_stops_ingest(kafka_bootstrap: str, tmp_path: Path,
                                               unique: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A batch observer that raises on every call is logged, and every event is still
    stored and every malformed message dead-lettered."""
    topic = f"observer.{unique}"
    publish_known(kafka_bootstrap, topic)
    calls: list[BatchReport] = []

    def broken(report: BatchReport) -> None:
        calls.append(report)
        raise RuntimeError("the observer broke")

    store = SQLiteStore(tmp_path / "s.db")
    source = KafkaSource(kafka_bootstrap, f"g-{unique}", [topic], session_timeout_ms=6000)
    sink = KafkaSink(kafka_bootstrap)
    try:
        consumer = Consumer(source, sink, store, {topic: SourceSpec(topic, "claims")},
                            on_batch=broken)
        with caplog.at_level(logging.ERROR, logger="backlight.consume"):
            stats = consumer.run(exit_when_idle_s=1.0)
        counts = {c.process: c.events for c in store.counts()}
    finally:
        source.close()
        sink.close()
        store.close()
    assert (stats.stored, dict(stats.dead_letter_reasons)) == (VALID, BAD)
    assert counts == {"claims": VALID}
    assert calls and calls[-1].lags == {(topic, 0): 0, (topic, 1): 0, (topic, 2): 0}
    assert "the batch observer failed" in caplog.text


# --- figures read from the store at scrape time (no broker needed) ---------------------------

@dataclass
class Filled:
    settings: Settings
    path: Path


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """The web tests' store with alerts evaluated, and a webhook channel so the evaluation
    queued notifications in the outbox; one of them marked sent, one given up on."""
    tmp = tmp_path_factory.mktemp("metrics")
    db = tmp / "s.db"
    (tmp / "b.toml").write_text(f'[store]\nurl = "sqlite:///{db}"\n\n[[channels]]\n'
                                'type = "webhook"\nname = "ops"\nurl = "http://127.0.0.1:9/h"\n')
    settings = load(tmp / "b.toml", environ={})
    assert evaluate_alerts(settings, fill_store(db, cases=150)) > 0
    outbox = Outbox(db)
    try:
        first, second, *_ = outbox.items("pending")
        now = datetime.now(UTC)
        outbox.mark_sent(first.id, now)
        outbox.mark_failed(second.id, "status 500", now + timedelta(minutes=1), dead=True)
    finally:
        outbox.close()
    return Filled(settings, db)


def test_store_figures_match_the_alert_state_and_the_outbox(filled: Filled) -> None:
    """Events per process, alerts by process/status/severity, alerts fired by process and
    rule, notifications sent and given up and the outbox depth equal what the store holds."""
    with running(filled.settings) as base:
        samples = scrape(base)
    state = SQLiteAlertState(filled.path)
    outbox = Outbox(filled.path)
    store = SQLiteStore(filled.path)
    try:
        alerts = Counter((a.process, a.status.value, a.severity.value)
                         for a in state.alerts().values())
        fired = Counter((c.alert.process, c.alert.rule) for c in state.history(limit=10_000)
                        if c.change is Change.FIRING)
        sent = Counter(i.channel for i in outbox.items("sent"))
        dead = Counter(i.channel for i in outbox.items("dead"))
        depth = outbox.depth()
        counts = {(c.process,): c.events for c in store.counts()}
    finally:
        state.close()
        outbox.close()
        store.close()
    assert by(samples, "backlight_store_up") == {(): 1}
    assert by(samples, "backlight_store_events", "process") == counts
    assert len(counts) == 4
    assert by(samples, "backlight_alerts", "process", "status", "severity") == alerts
    assert sum(alerts.values()) > 0
    assert by(samples, "backlight_alerts_fired_total", "process", "rule") == fired
    assert sum(fired.values()) > 0
    assert by(samples, "backlight_notifications_sent_total", "channel") == {("ops",): 1}
    assert sent == {"ops": 1}
    assert by(samples, "backlight_notifications_failed_total", "channel") == {("ops",): 1}
    assert dead == {"ops": 1}
    assert by(samples, "backlight_outbox_depth", "channel") == {
        (c,): n for c, n in depth.items()}
    assert depth["ops"] >= 1
    assert by(samples, "backlight_events_consumed_total", "topic") == {}


def test_unfolded_events_count_down_to_zero_once_the_read_models_fold(filled: Filled) -> None:
    """Before any fold every stored event is unfolded; after the overview (which folds what
    arrived) none is."""
    store = SQLiteStore(filled.path)
    try:
        stored = sum(c.events for c in store.counts())
    finally:
        store.close()
    with running(filled.settings) as base:
        before = by(scrape(base), "backlight_read_models_unfolded_events")
        assert httpx.get(f"{base}/").status_code == 200
        after = by(scrape(base), "backlight_read_models_unfolded_events")
    assert before == {(): stored} and stored > 1_000
    assert after == {(): 0}


@pytest.fixture()
def small_store(tmp_path: Path) -> Iterator[Settings]:
    """A store with a few events, and settings over it (no sources)."""
    fill_store(tmp_path / "s.db", cases=10)
    yield settings_for(tmp_path, "127.0.0.1:9", None, "unused")


def test_not_ready_when_the_store_cannot_be_read(small_store: Settings, tmp_path: Path) -> None:
    """Ready while the store answers; once its events table is gone (renamed by another
    program), /readyz is 503 naming the store, /metrics says backlight_store_up 0, and
    /healthz still says the process is up."""
    with running(small_store) as base:
        before = httpx.get(f"{base}/readyz", timeout=30)
        with sqlite3.connect(tmp_path / "s.db", isolation_level=None) as other:
            other.execute("ALTER TABLE events RENAME TO events_elsewhere")
        after = httpx.get(f"{base}/readyz", timeout=30)
        samples = scrape(base)
        health = httpx.get(f"{base}/healthz", timeout=30)
    assert before.status_code == 200 and before.json()["consumer"] == "none"
    assert "lag" not in before.json()
    assert after.status_code == 503
    assert after.json()["reason"].startswith("the store cannot be read")
    assert "no such table: events" in after.json()["reason"]
    assert by(samples, "backlight_store_up") == {(): 0}
    assert by(samples, "backlight_store_events", "process") == {}
    assert health.status_code == 200


def test_not_ready_when_the_in_process_consumer_failed(small_store: Settings) -> None:
    """A consumer started beside the server that fails (no sources configured) makes
    /readyz 503 with the consumer's error."""
    metrics = Metrics()
    with running(small_store, metrics=metrics) as base:
        thread = jobs.consume_in_background(small_store, metrics, threading.Event())
        thread.join(30)
        response = httpx.get(f"{base}/readyz", timeout=30)
    assert response.status_code == 503
    assert response.json()["consumer"] == "failed"
    assert "no [[sources]] configured" in response.json()["reason"]
