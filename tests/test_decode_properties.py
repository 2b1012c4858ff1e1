"""Decode never raises: generated messages (arbitrary JSON, arbitrary bytes, every hostile class,
mutations of valid events) go through the real ``decode`` the consumer calls, plain and as
CloudEvents (structured with data or data_base64, binary with ce_ headers). Each one is an event
that round-trips (text without NUL, finite numbers, a time in range) or an ``InvalidEvent`` with
a documented reason code; nothing else escapes. 10,220 examples in all (``EXAMPLES``)."""

from __future__ import annotations

import base64
import json
import math
import time
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.decode import REASONS, FieldMapping, SourceSpec, decode
from schemas.errors import InvalidEvent
from schemas.event import CaseEvent, format_time

Headers = list[tuple[str, bytes | None]]
SPECS = [SourceSpec("t", "onboarding"), SourceSpec("t", None),
         SourceSpec("t", "claims", FieldMapping(case_id="loan.id", timezone="Europe/Amsterdam")),
         SourceSpec("t", "payments", max_depth=4, max_future_skew_us=0)]
EXAMPLES = {"json": 2_500, "bytes": 2_000, "hostile": 3_000, "mutations": 2_700, "huge": 20}
VALID = {"event_id": "onb-000017-3", "process": "onboarding", "case_id": "onb-000017",
         "activity": "Verify identity", "timestamp": "2026-03-04T09:15:00+01:00",
         "lifecycle": "complete", "resource": "u-112", "team": "back-office/kyc",
         "attributes": {"amount": 20000, "channel": "branch", "tags": ["a", {"b": 1.5}]}}
TEXT_FIELDS = ("event_id", "process", "case_id", "activity", "lifecycle", "resource", "team")


def run(examples: int) -> settings:
    """Hypothesis settings for ``examples`` generated messages, without a per-example deadline."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _finite(literal: str) -> Any:
    raise AssertionError(f"stored attributes hold {literal}")


def _depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max(map(_depth, node.values()), default=0)
    if isinstance(node, list):
        return 1 + max(map(_depth, node), default=0)
    return 0


def _clean(node: Any) -> None:
    """Assert no NUL in any key or string and every number finite."""
    if isinstance(node, str):
        assert "\x00" not in node
        node.encode()
    elif isinstance(node, float):
        assert math.isfinite(node)
    elif isinstance(node, dict):
        for key, child in node.items():
            _clean(key)
            _clean(child)
    elif isinstance(node, list):
        for child in node:
            _clean(child)


def check(value: bytes, headers: Headers, spec: SourceSpec) -> None:
    """Decode like the consumer; assert the outcome is a clean event or a documented reason."""
    before = time.time_ns() // 1000
    try:
        ev = decode(value, headers, spec)
    except InvalidEvent as err:
        assert err.code in REASONS and err.code != "undecodable", str(err)
        event(err.code)
        return
    event("event")
    assert isinstance(ev, CaseEvent)
    for name in TEXT_FIELDS:
        text = getattr(ev, name)
        if text is not None or name not in ("resource", "team"):
            assert type(text) is str and "\x00" not in text
            text.encode()  # no lone surrogate: every store and hash can take it
    assert 0 <= ev.time_us <= time.time_ns() // 1000 + spec.max_future_skew_us
    assert before - 10**6 <= time.time_ns() // 1000
    format_time(ev.time_us)
    if ev.attributes is not None:
        attributes = json.loads(ev.attributes, parse_constant=_finite)
        assert isinstance(attributes, dict) and attributes
        _clean(attributes)
        assert _depth(attributes) + 1 <= spec.max_depth
    json.dumps(ev.to_json(), allow_nan=False)


def envelope(kind: str, body: bytes) -> tuple[bytes, Headers]:
    """The body as a plain message, a structured CloudEvent (data or data_base64) or a binary
    one (ce_ headers)."""
    if kind == "binary":
        return body, [("ce_specversion", b"1.0"), ("ce_id", b"ce-1"), ("ce_subject", b"c-9"),
                      ("ce_time", b"2026-03-04T10:00:00Z"), ("other", None)]
    if kind == "base64":
        return (b'{"specversion":"1.0","id":"ce-1","source":"/s","type":"t","data_base64":"'
                + base64.b64encode(body) + b'"}'), []
    if kind == "data":
        return b'{"specversion":"1.0","id":"ce-1","time":"2026-03-04T10:00:00Z","data":' + body + b"}", []
    return body, []


_kinds = st.sampled_from(["plain", "plain", "data", "base64", "binary"])
_specs = st.sampled_from(SPECS)
_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=10**400)
            | st.floats() | st.text(max_size=10)
            | st.sampled_from(["\x00", "a\x00b", "\x1b[31m", "\x07", "\ud800", "", " "]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


def dumps(doc: Any, ascii_only: bool = True) -> bytes:
    """JSON as a lax source writes it (NaN and Infinity as Python's json does)."""
    return json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@run(EXAMPLES["json"])
@given(st.one_of(_json, st.fixed_dictionaries({}, optional={**{k: _json for k in VALID},
                                                           **{k: st.just(v) for k, v in VALID.items()}})),
       _kinds, _specs, st.booleans())
def test_arbitrary_json_is_an_event_or_a_reason(doc: Any, kind: str, spec: SourceSpec,
                                                 ascii_only: bool) -> None:
    """Any JSON value, and any object over the schema's keys, decodes or gets a reason."""
    check(*envelope(kind, dumps(doc, ascii_only)), spec)


@run(EXAMPLES["bytes"])
@given(st.binary(max_size=400), _kinds, _specs)
def test_arbitrary_bytes_are_an_event_or_a_reason(value: bytes, kind: str, spec: SourceSpec) -> None:
    """Any bytes, bare or inside a CloudEvent, decode or get a reason."""
    check(*envelope(kind, value), spec)


_FIELDS = ["case_id", "activity", "resource", "team", "event_id", "process", "lifecycle"]
_stamps = st.sampled_from([
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00", "9999-12-30",
    "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2999-01-01T00:00:00+00:00",
    "9999-12-31T23:59:59.999999", "0001-01-01T00:00:00+14:00"]) | st.datetimes(
        timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())


def _deep(depth: int, bracket: bool) -> str:
    return ("[" * depth + "]" * depth) if bracket else ('{"a":' * depth + "1" + "}" * depth)


def _put(doc: dict[str, Any], field: str, text: str) -> bytes:
    """The valid event with ``text`` (raw JSON) as the value of ``field``."""
    body = dumps({k: v for k, v in doc.items() if k != field})
    return body[:-1] + b', "' + field.encode() + b'": ' + text.encode() + b"}"


_hostile = st.one_of(
    st.builds(lambda d, b, f: _put(VALID, f, _deep(d, b)), st.integers(1, 3000), st.booleans(),
              st.sampled_from(["attributes", "case_id", "data", "x"])),
    st.builds(lambda f, pre, post: dumps({**VALID, f: pre + "\x00" + post}),
              st.sampled_from(_FIELDS), st.text(max_size=4), st.text(max_size=4)),
    st.builds(lambda k, inner: dumps({**VALID, "attributes": {k: inner}}),
              st.sampled_from(["k", "k\x00", "\x00"]),
              st.sampled_from(["v\x00", ["\x00"], {"\x00": 1}, "\\u0000", "\x1b[31m\x07"])),
    st.builds(lambda lit, f: _put(VALID, f, lit),
              st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "[NaN]",
                               '{"n": Infinity}', "1E+309"]),
              st.sampled_from(["attributes", "case_id", "timestamp", "unknown"])),
    st.builds(lambda s: dumps({**VALID, "timestamp": s}), _stamps),
    st.builds(lambda sign, digits, f: _put(VALID, f, sign + "9" * digits), st.sampled_from(["", "-"]),
              st.integers(18, 5000), st.sampled_from(["case_id", "attributes", "event_id"])),
    st.builds(lambda a, b: dumps(VALID)[:-1] + b', "case_id": ' + json.dumps(a).encode()
              + b', "attributes": {"k": 1, "k": ' + json.dumps(b).encode() + b"}}",
              st.text(max_size=5) | st.integers(), _scalars),
    st.builds(lambda body: b"\xef\xbb\xbf" + body, st.just(dumps(VALID)) | st.binary(max_size=40)),
    st.builds(lambda b64: dumps({"specversion": "1.0", "id": "1", "data_base64": b64}),
              st.text(max_size=30) | st.integers() | st.none() | st.sampled_from(
                  ["YWJj=", "====", base64.b64encode(b"[1]").decode(),
                   base64.b64encode(b'{"case_id":NaN}').decode()])),
)


@run(EXAMPLES["hostile"])
@given(_hostile, _kinds, _specs)
def test_each_hostile_class_is_an_event_or_a_reason(value: bytes, kind: str,
                                                    spec: SourceSpec) -> None:
    """Deep nesting, NUL in each field, NaN/Infinity, far timestamps, huge integers, repeated
    keys, byte-order marks and bad base64 decode or get a reason, plain and in CloudEvents."""
    check(*envelope(kind, value), spec)


_mutation = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(sorted(VALID)), st.none()),
    st.tuples(st.just("replace"), st.sampled_from(sorted(VALID)), _json),
    st.tuples(st.just("flip"), st.integers(0, 400), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 400), st.binary(min_size=1, max_size=3)),
    st.tuples(st.just("cut"), st.integers(0, 400), st.integers(1, 20)),
)


def mutate(doc: dict[str, Any], steps: list[tuple[str, Any, Any]]) -> bytes:
    """The valid event with fields dropped, replaced or retyped, then bytes flipped, inserted
    or cut."""
    doc = dict(doc)
    for op, where, what in steps:
        if op == "drop":
            doc.pop(where, None)
        elif op == "replace":
            doc[where] = what
    body = bytearray(dumps(doc))
    for op, where, what in steps:
        if op in ("drop", "replace"):
            continue
        at = where % (len(body) + 1)
        if op == "flip" and at < len(body):
            body[at] = what
        elif op == "insert":
            body[at:at] = what
        elif op == "cut":
            del body[at:at + what]
    return bytes(body)


@run(EXAMPLES["mutations"])
@given(st.lists(_mutation, min_size=1, max_size=4), _kinds, _specs)
def test_mutated_valid_events_are_an_event_or_a_reason(steps: list[tuple[str, Any, Any]], kind: str,
                                                       spec: SourceSpec) -> None:
    """A valid event with fields dropped, replaced, retyped and bytes flipped decodes or gets a
    reason."""
    check(*envelope(kind, mutate(VALID, steps)), spec)


@run(EXAMPLES["huge"])
@given(st.integers(10_000, 60_000), st.sampled_from(["int", "str", "nested", "nul", "nan"]),
       _kinds, st.sampled_from([SPECS[0], SourceSpec("t", "p", max_bytes=4 * 1024 * 1024)]))
def test_huge_objects_are_an_event_or_a_reason(keys: int, shape: str, kind: str,
                                               spec: SourceSpec) -> None:
    """Attributes of 10,000-60,000 keys (with a NUL or a NaN in the last) decode within the
    size limit or are too_large."""
    last = {"int": 1, "str": "v", "nested": [[1]], "nul": "\x00", "nan": math.nan}[shape]
    attributes: dict[str, Any] = dict.fromkeys(map(str, range(keys - 1)), 0)
    attributes["last"] = last
    check(*envelope(kind, dumps({**VALID, "attributes": attributes})), spec)
