"""`replay --speed`: events go out in time order, paced by their own timestamps / speed."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer

from ingest.publish import publish
from ingest.transport import KafkaSink, ensure_topics
from schemas.event import CaseEvent, to_time_us

pytestmark = pytest.mark.kafka
T0 = to_time_us(datetime(2026, 3, 2, 9, tzinfo=UTC))


def test_speed_paces_by_event_time_and_sends_in_time_order(kafka_bootstrap: str,
                                                          unique: str) -> None:
    """Two hours of events at 3600x wait about two seconds in all, and arrive in time order."""
    hours = [0.0, 1.5, 0.5, 2.0, 1.0]  # given out of order
    events = [CaseEvent(f"e{i}", "claims", f"c{i % 2}", "Step", T0 + int(h * 3600e6))
              for i, h in enumerate(hours)]
    topic = f"speed.{unique}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    sink = KafkaSink(kafka_bootstrap)
    started = time.monotonic()
    assert publish(events, sink, topic, speed=3600) == 5
    took = time.monotonic() - started
    sink.close()
    assert 1.9 <= took < 8, "two hours at 3600x should take about two seconds"
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    order = [m.value for m in consumer]
    consumer.close()
    assert [next(f"e{i}" for i in range(5) if f'"e{i}"'.encode() in v) for v in order] == [
        "e0", "e2", "e4", "e1", "e3"]


def test_speed_must_be_positive(kafka_bootstrap: str) -> None:
    """A speed of zero or less is refused before anything is sent."""
    sink = KafkaSink(kafka_bootstrap)
    with pytest.raises(ValueError, match="speed must be positive"):
        publish([], sink, "unused", speed=0)
    sink.close()
