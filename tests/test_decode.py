"""The event contract: plain JSON, CloudEvents, field mappings, and why bad messages are bad."""

from __future__ import annotations

import base64
import json
from importlib import resources
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decode import FieldMapping, SourceSpec, decode
from schemas.errors import InvalidEvent
from schemas.event import format_time

SPEC = SourceSpec("onboarding.events", "onboarding")
VALID = {"event_id": "onb-000017-3", "process": "onboarding", "case_id": "onb-000017",
         "activity": "Verify identity", "timestamp": "2026-03-04T09:15:00+01:00",
         "lifecycle": "complete", "resource": "u-112", "team": "back-office/kyc",
         "attributes": {"amount": 20000, "channel": "branch"}}
SCHEMA = json.loads(resources.files("schemas").joinpath("case-event.schema.json").read_text())


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def reason(value: bytes, headers: list[tuple[str, bytes | None]] | None = None,
           spec: SourceSpec = SPEC) -> str:
    with pytest.raises(InvalidEvent) as err:
        decode(value, headers or [], spec)
    return err.value.code


def test_design_example_decodes_to_utc() -> None:
    """The DESIGN.md example event decodes with its time converted to UTC."""
    ev = decode(raw(VALID), [], SPEC)
    assert (ev.event_id, ev.case_id, ev.activity, ev.resource, ev.team) == (
        "onb-000017-3", "onb-000017", "Verify identity", "u-112", "back-office/kyc")
    assert format_time(ev.time_us) == "2026-03-04T08:15:00.000000+00:00"
    assert json.loads(ev.attributes or "") == {"amount": 20000, "channel": "branch"}


def test_process_and_lifecycle_defaults() -> None:
    """A message without process takes the topic's; lifecycle defaults to complete."""
    doc = {k: VALID[k] for k in ("case_id", "activity", "timestamp")}
    ev = decode(raw(doc), [], SourceSpec("payments.events", "payments"))
    assert (ev.process, ev.lifecycle) == ("payments", "complete")


def test_derived_event_id_is_deterministic() -> None:
    """Without event_id the same content gives the same id, other content another id."""
    doc = {k: v for k, v in VALID.items() if k != "event_id"}
    a, b = decode(raw(doc), [], SPEC), decode(json.dumps(doc, indent=2).encode(), [], SPEC)
    other = decode(raw({**doc, "activity": "Open account"}), [], SPEC)
    assert a.event_id == b.event_id != other.event_id


@pytest.mark.parametrize(("value", "code"), [
    (b"{not json", "invalid_json"),
    (b"\xff\xfe\x00garbage", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (raw({**VALID, "case_id": None}), "missing_field"),
    (raw({k: v for k, v in VALID.items() if k != "activity"}), "missing_field"),
    (raw({**VALID, "activity": "  "}), "missing_field"),
    (raw({**VALID, "activity": 42}), "wrong_type"),
    (raw({**VALID, "case_id": ["a"]}), "wrong_type"),
    (raw({**VALID, "attributes": [1]}), "wrong_type"),
    (raw({**VALID, "timestamp": "yesterday"}), "bad_timestamp"),
    (raw({**VALID, "timestamp": "2026-13-04T09:15:00Z"}), "bad_timestamp"),
    (raw({**VALID, "timestamp": "2026-03-04T09:15:00"}), "naive_timestamp"),
    (raw({**VALID, "lifecycle": "COMPLETE"}), "bad_lifecycle"),
    (raw({**VALID, "colour": "red"}), "unknown_field"),
    (raw({**VALID, "activity": "x" * 600}), "too_long"),
    (raw({"specversion": "1.0", "id": "1", "type": "t", "source": "s"}), "cloudevent_without_data"),
    (raw({"specversion": "0.3", "id": "1", "data": VALID}), "bad_cloudevent"),
])
def test_bad_messages_are_rejected_with_a_reason(value: bytes, code: str) -> None:
    """Each kind of bad message is rejected with its own stable reason code."""
    assert reason(value) == code


def test_oversized_payload_is_rejected_before_parsing() -> None:
    """A payload over the source's size limit is rejected as too large."""
    big = raw({**VALID, "attributes": {"blob": "x" * 300_000}})
    assert reason(big) == "too_large"


def test_structured_cloudevent() -> None:
    """A structured CloudEvent's data is the event; its id and time fill in what data lacks."""
    data = {k: VALID[k] for k in ("case_id", "activity")}
    msg = {"specversion": "1.0", "id": "ce-1", "type": "case.step", "source": "/onboarding",
           "time": "2026-03-04T09:15:00Z", "data": data}
    ev = decode(raw(msg), [], SPEC)
    assert (ev.event_id, ev.case_id, format_time(ev.time_us)) == (
        "ce-1", "onb-000017", "2026-03-04T09:15:00.000000+00:00")
    b64 = {**msg, "data_base64": base64.b64encode(raw(data)).decode()}
    del b64["data"]
    assert decode(raw(b64), [], SPEC).case_id == "onb-000017"


def test_binary_cloudevent() -> None:
    """A binary-mode CloudEvent takes id, time and subject (as case id) from ce_ headers."""
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"), ("ce_id", b"ce-9"), ("ce_type", b"case.step"),
        ("ce_source", b"/claims"), ("ce_time", b"2026-03-04T10:00:00+01:00"),
        ("ce_subject", b"clm-1")]
    ev = decode(raw({"activity": "Register claim"}), headers, SPEC)
    assert (ev.event_id, ev.case_id, ev.activity) == ("ce-9", "clm-1", "Register claim")
    assert reason(raw({"activity": "x"}), [("ce_specversion", b"2.0")]) == "bad_cloudevent"


def test_field_mapping_with_nested_paths_and_timezone() -> None:
    """A source's mapping finds fields by dotted path; naive times take its time zone."""
    mapping = FieldMapping(case_id="loan.id", activity="step.name", timestamp="at",
                           resource="handler", timezone="Europe/Amsterdam")
    spec = SourceSpec("loans", "onboarding", mapping)
    msg = {"loan": {"id": 173688}, "step": {"name": "A_SUBMITTED"}, "at": "2011-10-01T00:38:44",
           "handler": "112", "extra": "ignored"}
    ev = decode(raw(msg), [], spec)
    assert (ev.case_id, ev.activity, ev.resource) == ("173688", "A_SUBMITTED", "112")
    assert format_time(ev.time_us) == "2011-09-30T22:38:44.000000+00:00"
    assert reason(raw({**msg, "step": "flat"}), spec=spec) == "missing_field"


def test_unknown_timezone_in_mapping_is_refused() -> None:
    """A mapping naming a time zone that does not exist is refused when built."""
    with pytest.raises(ValueError, match="Mars/Olympus"):
        FieldMapping(timezone="Mars/Olympus")


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                     st.text(max_size=20))
_docs = st.dictionaries(
    st.sampled_from([*VALID.keys(), "colour", "specversion"]),
    st.one_of(_scalars, st.sampled_from(list(VALID.values())),
              st.dictionaries(st.text(max_size=5), _scalars, max_size=3)),
    max_size=10)


@settings(max_examples=400, deadline=None)
@given(_docs)
def test_decoder_accepts_only_what_the_json_schema_allows(doc: dict[str, Any]) -> None:
    """Whatever the decoder accepts is valid under schemas/case-event.schema.json."""
    try:
        decode(raw(doc), [], SPEC)
    except InvalidEvent:
        return
    jsonschema.validate(doc, SCHEMA)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_never_fails_other_than_invalid_event(value: bytes) -> None:
    """Arbitrary bytes either decode or raise InvalidEvent, never another exception."""
    try:
        decode(value, [], SPEC)
    except InvalidEvent as err:
        assert err.code
