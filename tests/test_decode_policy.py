"""The decode policy on crafted messages: each message stored, dead-lettered or skipped, and a
batch sorted into what the writer needs (``ingest.decode_policy``), without Kafka or a store."""

from __future__ import annotations

import json

from ingest.decode_policy import DecodePolicy, Policy
from ingest.rdkafka import Record
from schemas.decode import SourceSpec
from schemas.errors import InvalidEvent
from schemas.event import CaseEvent
from schemas.frame import Coordinates

TOPIC, OTHER = "claims.events", "unknown.events"
POLICY = DecodePolicy({TOPIC: SourceSpec(TOPIC, "claims")})


def event(n: int) -> bytes:
    return json.dumps({"event_id": f"e{n}", "case_id": f"c{n}", "activity": "Check",
                       "timestamp": "2024-01-01T00:00:00Z"}).encode()


def msg(offset: int, value: bytes | None, partition: int = 0, topic: str = TOPIC) -> Record:
    return Record(topic, partition, offset, b"k", value, (("trace", b"t1"),))


def test_each_message_gets_its_policy_and_the_reason() -> None:
    """A valid event is STORE with the event, a tombstone SKIP, a message that is not JSON
    DEAD_LETTER coded invalid_json, one on a topic with no source DEAD_LETTER unknown_topic."""
    policy, outcome = POLICY.classify(msg(0, event(1)))
    assert policy is Policy.STORE
    assert isinstance(outcome, CaseEvent) and (outcome.event_id, outcome.process) == ("e1", "claims")
    assert POLICY.classify(msg(1, None)) == (Policy.SKIP, None)
    policy, outcome = POLICY.classify(msg(2, b"{not json"))
    assert policy is Policy.DEAD_LETTER
    assert isinstance(outcome, InvalidEvent) and outcome.code == "invalid_json"
    policy, outcome = POLICY.classify(msg(3, event(2), topic=OTHER))
    assert policy is Policy.DEAD_LETTER
    assert isinstance(outcome, InvalidEvent) and outcome.code == "unknown_topic"
    assert str(outcome) == f"unknown_topic: no source is configured for {OTHER}"


def test_a_batch_is_sorted_into_events_dead_letters_and_skipped_messages() -> None:
    """Events keep batch order with their source coordinates; each bad message becomes a
    dead letter to <topic>.dlq, its value unchanged and its reason in headers, counted per
    code and per (topic, code); tombstones are only counted as skipped."""
    batch = [msg(0, event(0)), msg(1, b"[1, 2"), msg(2, None), msg(0, event(3), partition=1),
             msg(5, event(4), topic=OTHER), msg(3, event(5))]
    prepared = POLICY.prepare(batch)
    assert [e.event_id for e in prepared.events] == ["e0", "e3", "e5"]
    assert prepared.origins == [Coordinates(TOPIC, 0, 0), Coordinates(TOPIC, 1, 0),
                                Coordinates(TOPIC, 0, 3)]
    assert [m.offset for m in prepared.messages] == [0, 0, 3]
    assert [(lt.topic, lt.value, dict(lt.ours)["backlight.error.code"])
            for lt in prepared.letters] == [
        (f"{TOPIC}.dlq", b"[1, 2", b"invalid_json"),
        (f"{OTHER}.dlq", event(4), b"unknown_topic")]
    assert dict(prepared.letters[0].headers) == {"trace": b"t1"}
    assert dict(prepared.bad) == {"invalid_json": 1, "unknown_topic": 1}
    assert dict(prepared.bad_by_topic) == {(TOPIC, "invalid_json"): 1,
                                           (OTHER, "unknown_topic"): 1}
    assert prepared.skipped == 1


def test_a_batch_covers_the_next_offset_of_every_partition_it_read() -> None:
    """The offsets to commit are one past the highest offset read per partition, whatever
    became of the message (stored, dead-lettered, skipped) and in whatever order it came."""
    batch = [msg(7, event(0)), msg(4, event(1)), msg(9, None, partition=1),
             msg(2, b"x", partition=2), msg(3, event(2), topic=OTHER)]
    assert POLICY.prepare(batch).next_offsets == {(TOPIC, 0): 8, (TOPIC, 1): 10, (TOPIC, 2): 3,
                                                  (OTHER, 0): 4}


def test_an_empty_batch_prepares_nothing() -> None:
    """No messages: no events, no dead letters, no offsets to commit."""
    prepared = POLICY.prepare([])
    assert (prepared.events, prepared.letters, prepared.next_offsets, prepared.skipped) == (
        [], [], {}, 0)
