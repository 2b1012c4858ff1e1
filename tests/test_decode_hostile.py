"""Hostile messages, one class at a time: each is an event or a dead letter with its exact reason
code, never an exception that stops the consumer (deep nesting, NUL, non-finite numbers,
timestamps out of range, huge numbers, repeated keys, byte-order marks, huge objects, bad
base64)."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.decode import REASONS, FieldMapping, SourceSpec, decode
from schemas.errors import InvalidEvent
from schemas.event import format_time

SPEC = SourceSpec("onboarding.events", "onboarding")
MAPPED = SourceSpec("loans", "onboarding", FieldMapping(case_id="loan.id", timezone="Europe/Amsterdam"))
BASE = {"case_id": "c-1", "activity": "Check", "timestamp": "2026-03-04T09:15:00+01:00"}
Headers = list[tuple[str, bytes | None]]


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def reason(value: bytes, headers: Headers | None = None, spec: SourceSpec = SPEC) -> str:
    with pytest.raises(InvalidEvent) as err:
        decode(value, headers or [], spec)
    assert err.value.code in REASONS
    return err.value.code


def structured(data: dict[str, Any]) -> bytes:
    return raw({"specversion": "1.0", "id": "ce-1", "source": "/s", "type": "t", "data": data})


def as_base64(data: bytes) -> bytes:
    return raw({"specversion": "1.0", "id": "ce-1", "source": "/s", "type": "t",
                "data_base64": base64.b64encode(data).decode()})


def binary(subject: str = "c-1") -> Headers:
    return [("ce_specversion", b"1.0"), ("ce_id", b"ce-9"), ("ce_subject", subject.encode()),
            ("ce_time", b"2026-03-04T10:00:00Z")]


def nested(depth: int, kind: str = "[") -> str:
    """A JSON value whose containers nest ``depth`` levels."""
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def with_attributes(text: str) -> bytes:
    return ('{"case_id":"c-1","activity":"Check","timestamp":"2026-03-04T09:15:00Z",'
            f'"attributes":{{"deep":{text}}}}}').encode()


# --- too_deep -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["[", "{"])
def test_nesting_up_to_the_limit_is_kept_one_more_level_is_too_deep(kind: str) -> None:
    """The message is level 1 and attributes level 2: 30 more levels (32 in all) decode, 31 do
    not."""
    event = decode(with_attributes(nested(30, kind)), [], SPEC)
    assert event.attributes == '{"deep":' + nested(30, kind) + "}"
    assert reason(with_attributes(nested(31, kind))) == "too_deep"


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_thousand_brackets_are_too_deep_not_a_recursion_error(depth: int) -> None:
    """The issue's 2 KB event of 1,000 '[' (and 100,000, beyond any recursion limit) is
    too_deep on the plain path, in CloudEvents and in an ignored field of a mapped source."""
    assert reason(with_attributes(nested(depth))) == "too_deep"
    big = SourceSpec("t", "onboarding", max_bytes=1024 * 1024)
    assert reason(with_attributes(nested(depth, "{")), spec=big) == "too_deep"
    deep = '{"x":' + nested(depth) + "}"
    assert reason(f'{{"specversion":"1.0","id":"1","data":{deep}}}'.encode()) == "too_deep"
    assert reason(deep.encode(), binary()) == "too_deep"
    assert reason(('{"loan":{"id":"7"},"activity":"a","timestamp":"2026-03-04T09:15:00",'
                   f'"ignored":{nested(depth)}}}').encode(), spec=MAPPED) == "too_deep"


def test_depth_in_data_base64_counts_from_the_envelope() -> None:
    """data_base64 is level 2 under its envelope, like data: the same limit applies."""
    ok = with_attributes(nested(29))
    assert decode(as_base64(ok), [], SPEC).case_id == "c-1"
    assert reason(as_base64(with_attributes(nested(30)))) == "too_deep"


def test_max_depth_is_per_source() -> None:
    """A source with max_depth = 2 refuses attributes holding an object, the default keeps it."""
    value = raw({**BASE, "attributes": {"a": {"b": 1}}})
    assert decode(value, [], SPEC).attributes == '{"a":{"b":1}}'
    assert decode(value, [], SourceSpec("t", "p", max_depth=3)).case_id == "c-1"
    assert reason(value, spec=SourceSpec("t", "p", max_depth=2)) == "too_deep"


def test_brackets_inside_strings_do_not_count() -> None:
    """Many '[' inside a string are text, not nesting: the event is kept."""
    event = decode(raw({**BASE, "activity": "[" * 500}), [], SPEC)
    assert event.activity == "[" * 500


# --- invalid_character --------------------------------------------------------------------


@pytest.mark.parametrize("field", ["case_id", "activity", "resource", "team", "event_id",
                                   "process", "lifecycle"])
def test_nul_in_any_stored_field_is_an_invalid_character(field: str) -> None:
    """A NUL in a field the store keeps is invalid_character, in the plain schema and in a
    structured CloudEvent."""
    doc = {**BASE, field: "complete\u0000" if field == "lifecycle" else "x\u0000y"}
    assert reason(raw(doc)) == "invalid_character"
    assert reason(structured(doc)) == "invalid_character"


@pytest.mark.parametrize("attributes", [{"k\u0000": 1}, {"k": "v\u0000"},
                                        {"k": [{"deep": ["\u0000"]}]}])
def test_nul_in_an_attribute_key_or_string_is_an_invalid_character(attributes: Any) -> None:
    """A NUL anywhere in the attributes, key or string, at any depth, is invalid_character."""
    assert reason(raw({**BASE, "attributes": attributes})) == "invalid_character"


def test_nul_in_cloudevent_headers_is_an_invalid_character() -> None:
    """A binary-mode CloudEvent whose subject (the case id) holds a NUL byte is refused."""
    assert reason(raw({"activity": "Check"}), binary("c\x001")) == "invalid_character"


def test_other_control_characters_are_kept_as_data() -> None:
    """ESC, BEL, DEL and C1 controls are data: the event keeps them exactly (outputs escape)."""
    text = "\x1b[31mred\x07\x7f\x85"
    event = decode(raw({**BASE, "case_id": text, "activity": text,
                        "attributes": {text: text}}), [], SPEC)
    assert (event.case_id, event.activity) == (text, text)
    assert json.loads(event.attributes or "") == {text: text}


def test_the_text_backslash_u0000_is_not_a_nul() -> None:
    """The six characters \\u0000 (an escaped backslash) are ordinary text, kept as sent."""
    event = decode(raw({**BASE, "activity": "\\u0000", "attributes": {"k": "\\u0000"}}), [], SPEC)
    assert event.activity == "\\u0000"
    assert json.loads(event.attributes or "") == {"k": "\\u0000"}


# --- non_finite_number --------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1E999"])
def test_non_finite_numbers_in_attributes_are_refused(literal: str) -> None:
    """NaN, Infinity and numbers beyond the float range are non_finite_number, also nested and
    in data_base64 (the store's JSON could not hold them)."""
    value = with_attributes(f'[1, {{"n": {literal}}}]')
    assert reason(value) == "non_finite_number"
    assert reason(as_base64(value)) == "non_finite_number"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_literal_anywhere_is_refused(literal: str) -> None:
    """A NaN or Infinity literal is refused wherever it is: a field, an ignored field of a
    mapped source, the CloudEvent envelope."""
    assert reason(b'{"case_id":%s,"activity":"a","timestamp":"2026-03-04T09:15:00Z"}'
                  % literal.encode()) == "non_finite_number"
    assert reason(b'{"loan":{"id":"7"},"activity":"a","timestamp":"2026-03-04T09:15:00",'
                  b'"other":%s}' % literal.encode(), spec=MAPPED) == "non_finite_number"
    assert reason(b'{"specversion":"1.0","id":"1","rank":%s,"data":%s}'
                  % (literal.encode(), raw(BASE))) == "non_finite_number"


def test_the_largest_finite_float_is_kept() -> None:
    """1.7976931348623157e308 is a finite number and is kept."""
    event = decode(with_attributes("1.7976931348623157e308"), [], SPEC)
    assert json.loads(event.attributes or "") == {"deep": 1.7976931348623157e308}


# --- timestamp_out_of_range ---------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat()


@pytest.mark.parametrize("stamp", ["1969-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z",
                                   "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                   "9999-12-30T00:00:00Z", "1970-01-01T00:59:59+01:00"])
def test_far_timestamps_are_out_of_range(stamp: str) -> None:
    """Times before 1970 or past tomorrow are timestamp_out_of_range: plain, CloudEvent time."""
    assert reason(raw({**BASE, "timestamp": stamp})) == "timestamp_out_of_range"
    ce = [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_time", stamp.encode())]
    assert reason(raw({"case_id": "c", "activity": "a"}), ce) == "timestamp_out_of_range"


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00", "9999-12-31T23:59:59"])
def test_naive_times_at_the_calendars_edge_are_out_of_range(stamp: str) -> None:
    """A naive time read in the source's zone at year 1 or 9999 is out of range, not an
    OverflowError."""
    doc = {"loan": {"id": "7"}, "activity": "a", "timestamp": stamp}
    assert reason(raw(doc), spec=MAPPED) == "timestamp_out_of_range"


def test_the_epoch_and_an_hour_ahead_are_kept() -> None:
    """1970-01-01T00:00:00Z and a time an hour from now are inside the range."""
    assert decode(raw({**BASE, "timestamp": "1970-01-01T00:00:00Z"}), [], SPEC).time_us == 0
    soon = datetime.now(UTC) + timedelta(hours=1)
    assert format_time(decode(raw({**BASE, "timestamp": _iso(soon)}), [], SPEC).time_us) == (
        soon.isoformat(timespec="microseconds"))


def test_max_future_skew_is_per_source() -> None:
    """Two hours ahead is kept under the default skew (a day), refused under a one-hour skew."""
    later = raw({**BASE, "timestamp": _iso(datetime.now(UTC) + timedelta(hours=2))})
    assert decode(later, [], SPEC).case_id == "c-1"
    hour = SourceSpec("t", "onboarding", max_future_skew_us=3_600_000_000)
    assert reason(later, spec=hour) == "timestamp_out_of_range"
    assert reason(raw({**BASE, "timestamp": _iso(datetime.now(UTC) + timedelta(days=2))})
                  ) == "timestamp_out_of_range"


# --- decisions: repeated keys, BOM, huge integers, huge objects, base64 ---------------------


def test_a_repeated_key_keeps_the_last_value() -> None:
    """Repeated keys: the last one wins (as Python's json and msgspec read them), at the top
    and in the attributes."""
    value = (b'{"case_id":"a","activity":"x","timestamp":"2026-03-04T09:15:00Z","case_id":"b",'
             b'"attributes":{"k":1,"k":2}}')
    event = decode(value, [], SPEC)
    assert (event.case_id, event.attributes) == ("b", '{"k":2}')


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    """A UTF-8 byte-order mark before the JSON is skipped: the same event as without it."""
    assert decode(b"\xef\xbb\xbf" + raw(BASE), [], SPEC) == decode(raw(BASE), [], SPEC)


def test_huge_integers_are_kept_exactly_up_to_4300_digits() -> None:
    """Integers beyond int64 and beyond the float range stay exact in the attributes; one of
    more than 4,300 digits is invalid_json; a 300-digit case id is too_long."""
    event = decode(raw({**BASE, "attributes": {"a": 2**64, "b": 10**400}}), [], SPEC)
    assert json.loads(event.attributes or "") == {"a": 2**64, "b": 10**400}
    assert reason(with_attributes("9" * 5000)) == "invalid_json"
    assert reason(raw({**BASE, "case_id": 10**300})) == "too_long"


def test_fifty_thousand_keys_within_the_size_limit_are_kept() -> None:
    """A 50,000-key attributes object is kept whole when it fits the source's max_event_bytes,
    and too_large under the default 256 KiB."""
    attributes = {f"k{n}": n for n in range(50_000)}
    value = raw({**BASE, "attributes": attributes})
    assert reason(value) == "too_large"
    big = SourceSpec("t", "onboarding", max_bytes=4 * 1024 * 1024)
    assert json.loads(decode(value, [], big).attributes or "") == attributes
    assert decode(structured({**BASE, "attributes": attributes}), [], big).case_id == "c-1"


@pytest.mark.parametrize(("data_base64", "code"), [
    ("not base64!", "bad_cloudevent"), ("YWJj=", "bad_cloudevent"), (42, "bad_cloudevent"),
    (["x"], "bad_cloudevent"), ("é", "bad_cloudevent"),
    (base64.b64encode(b"{not json").decode(), "bad_cloudevent"),
    (base64.b64encode(b"\xff\xfe\xfd").decode(), "bad_cloudevent"),
    (base64.b64encode(b"[1]").decode(), "bad_cloudevent"),
])
def test_data_base64_that_is_not_base64_of_a_json_object_is_a_bad_cloudevent(
        data_base64: Any, code: str) -> None:
    """data_base64 that is not base64, or not of a JSON object, is bad_cloudevent."""
    assert reason(raw({"specversion": "1.0", "id": "1", "data_base64": data_base64})) == code


def test_an_unforeseen_failure_is_undecodable_not_a_crash() -> None:
    """Headers no Kafka client gives (a key that is not text) are a dead letter, undecodable."""
    headers: Any = [(None, b"x"), (b"ce_id", 5)]
    assert reason(raw(BASE), headers) == "undecodable"


def test_the_time_check_uses_the_clock_at_decode() -> None:
    """An event a minute ahead is refused under a zero-second skew, kept once that minute has
    passed (the bound is now + skew at decode, not at start-up)."""
    zero = SourceSpec("t", "onboarding", max_future_skew_us=0)
    ahead = datetime.now(UTC) + timedelta(seconds=1)
    value = raw({**BASE, "timestamp": _iso(ahead)})
    assert reason(value, spec=zero) == "timestamp_out_of_range"
    while datetime.now(UTC) <= ahead:
        time.sleep(0.05)
    assert decode(value, [], zero).case_id == "c-1"


def test_a_lone_surrogate_in_the_attributes_is_invalid_json_a_pair_is_kept() -> None:
    """An unpaired \\ud800 in an attribute key or string is invalid_json, as in a field; an
    emoji written as an escaped surrogate pair is kept."""
    assert reason(with_attributes('"\\ud800"')) == "invalid_json"
    assert reason(with_attributes('{"\\udfff": 1}')) == "invalid_json"
    event = decode(with_attributes('"\\ud83d\\ude00"'), [], SPEC)
    assert json.loads(event.attributes or "") == {"deep": "\U0001f600"}
