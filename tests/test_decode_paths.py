"""The decoder's two paths agree: the typed fast path for plain-schema messages accepts exactly
what the general path accepts, with the same event (id, time, attributes text), and leaves every
rejection to it, so the reason codes and messages are the general path's."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.decode import FieldMapping, SourceSpec, decode, decode_general
from schemas.errors import InvalidEvent
from schemas.event import CaseEvent

SPECS = [SourceSpec("t", "onboarding"), SourceSpec("t", None),
         SourceSpec("t", "claims", FieldMapping(timezone="Europe/Amsterdam")),
         SourceSpec("t", " "), SourceSpec("t", "p" * 129)]
_times = st.one_of(
    st.sampled_from(["2026-03-04T09:15:00+01:00", "2026-03-04t09:15:00z", "2026-03-04T09:15:00Z",
                     "2026-03-04T09:15:00.1234567+02:00", "2026-03-04T09:15:00+02",
                     "2026-03-04 09:15:00", "2026-03-04T09:15:00", "2026-03-04", "20260304T0915",
                     "yesterday", "", " ", "2026-02-30T00:00:00Z", "2026-03-04T24:00:00Z"]),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.text(max_size=70))
_texts = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "\t\n", "<b>x</b>", "é", "x" * 257,
                                                           "x" * 513, "start", "complete",
                                                           "schedule", "COMPLETE", "\ud800"]))
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**80)
    | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)
_field_values = {
    "case_id": _texts | st.integers() | st.booleans() | st.floats(),
    "activity": _texts, "timestamp": _times, "process": _texts | st.none(),
    "lifecycle": _texts | st.none(), "resource": _texts | st.none(), "team": _texts | st.none(),
    "event_id": _texts | st.none() | st.integers(),
    "attributes": st.none() | st.dictionaries(st.text(max_size=6), _json_values, max_size=4)
    | _json_values,
}
_docs = st.fixed_dictionaries(
    {}, optional={**_field_values, "specversion": st.just("1.0"), "colour": _texts,
                  "data": st.dictionaries(st.sampled_from(sorted(_field_values)), _texts)})
_REQUIRED = {"case_id": "c-1", "activity": "Check", "timestamp": "2026-03-04T09:15:00+01:00"}


def outcome(decoder: Any, value: bytes, spec: SourceSpec) -> CaseEvent | tuple[str, str]:
    """The event a decoder returns, or the (code, message) of its rejection."""
    try:
        return decoder(value, spec)
    except InvalidEvent as err:
        return err.code, str(err)


def fast(value: bytes, spec: SourceSpec) -> CaseEvent:
    return decode(value, [], spec)


def general(value: bytes, spec: SourceSpec) -> CaseEvent:
    return decode_general(value, spec, None)


def encode(doc: dict[str, Any], ascii_only: bool) -> bytes:
    """The message as a source might write it (NaN and Infinity as Python's json writes them)."""
    return json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.builds(lambda required, doc: {**required, **doc},
                 st.fixed_dictionaries({}, optional={k: st.just(v) for k, v in _REQUIRED.items()}), _docs),
       st.sampled_from(SPECS), st.booleans())
@example({**_REQUIRED, "attributes": {"n": math.inf}}, SPECS[0], True)
@example({**_REQUIRED, "attributes": {"n": 10**30, "f": 1e300, "é": "ü"}}, SPECS[0], False)
@example({**_REQUIRED, "case_id": 2**70}, SPECS[0], True)
@example({**_REQUIRED, "case_id": True}, SPECS[0], True)
def test_fast_path_agrees_with_the_general_path(doc: dict[str, Any], spec: SourceSpec,
                                                 ascii_only: bool) -> None:
    """Any JSON object decodes to the same event, or is rejected with the same reason, on
    both paths."""
    value = encode(doc, ascii_only)
    assert outcome(fast, value, spec) == outcome(general, value, spec)


@pytest.mark.parametrize("value", [
    b'\xef\xbb\xbf{"case_id":"a","activity":"x","timestamp":"2026-03-04T09:15:00Z"}',
    b'{"case_id":"a","activity":"x\xed\xa0\x80","timestamp":"2026-03-04T09:15:00Z"}',
    b'{"case_id":"a","activity":"x","timestamp":"2026-03-04T09:15:00Z","case_id":"b"}',
    b'{"case_id":"a","activity":"x","timestamp":"2026-03-04T09:15:00Z","attributes":{"n":NaN}}',
    b'{"case_id":"a","activity":"x","timestamp":"2026-03-04T09:15:00Z","attributes":{"n":1E400}}',
    b'{"case_id":"a","activity":"x","timestamp":"2026-03-04T09:15:00Z"} x',
    b'{"case_id":"a","activity":"x\x01","timestamp":"2026-03-04T09:15:00Z"}',
    '{"case_id":"a","activity":"x","timestamp":"2026-03-04T09:15:00Z"}'.encode("utf-16"),
    b' {"case_id":1,"activity":"\\u00e9\\ud83d\\ude00","timestamp":"2026-03-04T09:15:00Z"}\n',
])
def test_unusual_bytes_decode_as_the_general_path_says(value: bytes) -> None:
    """Byte-level oddities (a byte-order mark, UTF-16, lone surrogates, repeated keys,
    non-finite numbers, control characters, trailing text) get the general path's outcome."""
    assert outcome(fast, value, SPECS[0]) == outcome(general, value, SPECS[0])


@given(st.binary(max_size=200))
def test_arbitrary_bytes_get_the_general_paths_outcome(value: bytes) -> None:
    """Arbitrary bytes are rejected (or accepted) exactly as the general path does."""
    assert outcome(fast, value, SPECS[0]) == outcome(general, value, SPECS[0])


@pytest.mark.parametrize("value", [
    b'{"case_id":"a","activity":"x\\ud800","timestamp":"2026-03-04T09:15:00Z"}',
    b'{"case_id":"a","activity":"x\xed\xa0\x80","timestamp":"2026-03-04T09:15:00Z","event_id":"e"}',
])
def test_a_lone_surrogate_in_a_field_is_rejected_not_a_crash(value: bytes) -> None:
    """A text field holding an unpaired surrogate (no store or hash can encode it) is rejected
    as invalid_json and names the field, instead of failing later in the id hash or the store."""
    code, message = outcome(fast, value, SPECS[0])  # type: ignore[misc]
    assert code == "invalid_json"
    assert message.startswith("invalid_json: activity holds a lone surrogate")
