"""Alert changes as CloudEvents on a real Kafka topic, sent from the outbox."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from alerts.channels import ChannelSettings, payload_for
from alerts.delivery import deliver
from alerts.routing import route
from backlight.kafka_alerts import KafkaTransport
from ingest.transport import ensure_topics
from schemas.alerts import Alert, AlertChange, Change, Severity, Status
from storage import Outbox

pytestmark = pytest.mark.kafka
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def alert(subject: str) -> Alert:
    """A firing alert on claims."""
    return Alert(key=f"stuck/claims/{subject}", rule="stuck", process="claims", subject=subject,
                 severity=Severity.CRITICAL, status=Status.FIRING, summary=f"{subject} is stuck",
                 evidence={"cases": 3}, segment={}, since=date(2026, 10, 30), cases=("c-1",),
                 owner="ana", first_seen=T0, last_seen=T0, fired_at=T0)


def test_one_cloudevent_per_change_lands_on_the_topic(kafka_bootstrap: str, unique: str,
                                                      tmp_path: Path) -> None:
    """Five changes over two evaluations give five CloudEvents, keyed by alert key, in order;
    enqueueing and delivering the same evaluation again publishes nothing more."""
    topic = f"alerts-{unique}"
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    bus = ChannelSettings.model_validate({"name": "bus", "type": "kafka", "topic": topic})
    channels = {"bus": bus}
    a, b, c = alert("Assessment"), alert("Payout"), alert("Intake")
    first = [AlertChange(Change.FIRING, x, T0) for x in (a, b, c)]
    second = [AlertChange(Change.RESOLVED, a, T0 + timedelta(hours=1)),
              AlertChange(Change.ESCALATED, b, T0 + timedelta(hours=1))]
    outbox = Outbox(tmp_path / "events.db")
    transport = KafkaTransport(kafka_bootstrap)
    try:
        notes = []
        for changes in (first, second, first):
            batch = route(changes, [], channels, T0)
            outbox.enqueue(batch, payload_for(channels), T0)
            notes += batch
        report = deliver(outbox, channels, {"kafka": transport}, lambda: T0 + timedelta(hours=2))
    finally:
        transport.close()
        outbox.close()
    assert report.sent == 5 and report.failed == 0 and len({n.id for n in notes}) == 5

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1500, group_id=None)
    records = []
    try:
        deadline = time.monotonic() + 20
        while len(records) < 5 and time.monotonic() < deadline:
            records += list(consumer)  # what arrives until 1.5 s pass without a record
    finally:
        consumer.close()
    assert len(records) == 5
    events = [json.loads(r.value) for r in records]
    assert all(e["specversion"] == "1.0" and e["source"] == "backlight" for e in events)
    assert all(r.key.decode() == e["subject"] for r, e in zip(records, events, strict=True))
    assert all(dict(r.headers)["content-type"] == b"application/cloudevents+json" for r in records)
    by_key: dict[str, list[str]] = {}
    for e in events:  # one key, one partition: consumed in the order sent
        by_key.setdefault(e["subject"], []).append(e["type"])
    assert by_key == {
        "stuck/claims/Assessment": ["backlight.alert.firing", "backlight.alert.resolved"],
        "stuck/claims/Payout": ["backlight.alert.firing", "backlight.alert.escalated"],
        "stuck/claims/Intake": ["backlight.alert.firing"]}
    assert {e["id"] for e in events} == {n.id for n in notes}
    assert events[0]["data"]["process"] == "claims"


def test_unreachable_broker_fails_the_attempt_not_the_worker(tmp_path: Path) -> None:
    """With no broker listening, the CloudEvent stays pending with a retry time; nothing raises."""
    bus = ChannelSettings.model_validate({"name": "bus", "type": "kafka"})
    outbox = Outbox(tmp_path / "events.db")
    transport = KafkaTransport("127.0.0.1:9", bootstrap_timeout_ms=1500)
    try:
        outbox.enqueue(route([AlertChange(Change.FIRING, alert("A"), T0)], [], {"bus": bus}, T0),
                       payload_for({"bus": bus}), T0)
        report = deliver(outbox, {"bus": bus}, {"kafka": transport}, lambda: T0)
        item = outbox.items()[0]
    finally:
        transport.close()
        outbox.close()
    assert (report.sent, report.failed) == (0, 1)
    assert item.status == "pending" and item.next_attempt_at > T0
    assert (item.last_error or "").startswith("publishing to Kafka failed")
