"""`replay --speed`: events go out in time order, paced by their own timestamps / speed, on an
injected clock (``ingest.memory.ManualClock``: its sleeps take no time) and the test transport in
memory; the real replay through Kafka is tests/test_ingest_kafka.py's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.memory import ManualClock, MemoryBroker
from ingest.publish import PACE_STEP_S, publish
from schemas.event import CaseEvent, to_time_us

T0 = to_time_us(datetime(2026, 3, 2, 9, tzinfo=UTC))


def events_at(hours: list[float]) -> list[CaseEvent]:
    return [CaseEvent(f"e{i}", "claims", f"c{i % 2}", "Step", T0 + int(h * 3600e6))
            for i, h in enumerate(hours)]


def sent_ids(broker: MemoryBroker, topic: str) -> list[str]:
    return [next(f"e{i}" for i in range(10) if f'"e{i}"'.encode() in (m.value or b""))
            for m in broker.messages(topic)]


def test_speed_paces_by_event_time_and_sends_in_time_order() -> None:
    """Two hours of events at 3600x wait two seconds in all, and arrive in time order."""
    broker, clock = MemoryBroker(partitions=1), ManualClock()
    hours = [0.0, 1.5, 0.5, 2.0, 1.0]  # given out of order
    assert publish(events_at(hours), broker.sink(), "speed", speed=3600, clock=clock) == 5
    assert clock.now == pytest.approx(2.0)
    assert clock.slept == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert sent_ids(broker, "speed") == ["e0", "e2", "e4", "e1", "e3"]


def test_a_long_gap_is_waited_whole_in_steps() -> None:
    """Ten hours between two events at 3600x: the second goes out after ten seconds, waited in
    steps of at most PACE_STEP_S, not early after the first step."""
    broker, clock = MemoryBroker(partitions=1), ManualClock()
    assert publish(events_at([0.0, 10.0]), broker.sink(), "gap", speed=3600, clock=clock) == 2
    assert clock.now == pytest.approx(10.0)
    assert max(clock.slept) <= PACE_STEP_S and len(clock.slept) == 2
    assert sent_ids(broker, "gap") == ["e0", "e1"]


def test_speed_must_be_positive() -> None:
    """A speed of zero or less is refused before anything is sent."""
    broker = MemoryBroker()
    with pytest.raises(ValueError, match="speed must be positive"):
        publish(events_at([0.0]), broker.sink(), "unused", speed=0)
    assert broker.messages("unused") == []
