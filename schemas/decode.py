"""Turn one Kafka message into a validated case event, or say exactly why it is not one.

Accepted: the plain JSON case event (see ``case-event.schema.json``), CloudEvents 1.0 in
structured mode (``specversion`` in the JSON, the event in ``data``) and in binary mode
(``ce_*`` headers, the event as the message value). A per-source ``FieldMapping`` says where
the fields are in messages of systems that do not speak the schema.

Two paths, one outcome. The common message (the plain schema, no mapping, no CloudEvent
headers) is parsed by a typed msgspec decoder straight into its nine fields (``_Plain``), about
ten times faster than ``json.loads`` into a dict. Whatever that decoder refuses (a CloudEvent,
a missing or mistyped field, an unknown field, non-finite numbers, a byte-order mark, lone
surrogates, anything not UTF-8) goes through the general path, which accepts exactly what it
always did and names the reason when it rejects. Both paths then run the same validation on
the same raw values (``_event``); the timestamp stays a string parsed by ``_parse_time`` (not
msgspec's datetime, which rounds and accepts differently), so ids and times do not depend on
the path (tests/test_decode_paths.py checks both paths agree on generated messages).

Hostile input. ``decode`` raises nothing but ``InvalidEvent``, whose code is one of ``REASONS``
(tests/test_decode_properties.py drives 10,000 generated messages through it): nesting of
objects and arrays deeper than the source's ``max_depth`` (the message is level 1) is
``too_deep``; a NUL in any stored text (a field, an attribute key or string) is
``invalid_character`` (other control characters are data, escaped by every output:
``schemas.printable``); ``NaN``/``Infinity`` anywhere, or an attribute number beyond the float
range, is ``non_finite_number``; a time before 1970 or after now + ``max_future_skew`` is
``timestamp_out_of_range``. Decided: a repeated key keeps its last value; a UTF-8 byte-order
mark is skipped (UTF-16/32 JSON is read too); integers are kept exact at any size up to
Python's 4,300-digit limit (beyond it ``invalid_json``), also beyond int64 or the float range;
objects of any number of keys are kept within ``max_bytes`` (no separate cap: the size limit
bounds the work); ``data_base64`` that is not base64 of a JSON object is ``bad_cloudevent``.
Anything unforeseen is ``undecodable`` rather than an exception that stops the consumer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from pydantic import BaseModel, ConfigDict, field_validator

from schemas.errors import InvalidEvent
from schemas.event import LIFECYCLES, CaseEvent, to_time_us

DEFAULT_MAX_BYTES = 256 * 1024
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_FUTURE_SKEW_US = 86_400_000_000  # one day
REASONS = frozenset({
    "empty_message", "too_large", "invalid_json", "too_deep", "non_finite_number",
    "invalid_character", "unknown_field", "missing_field", "wrong_type", "too_long",
    "bad_lifecycle", "bad_timestamp", "naive_timestamp", "timestamp_out_of_range",
    "bad_cloudevent", "cloudevent_without_data", "undecodable",
})
"""Every reason code ``decode`` gives (``InvalidEvent.code``): the dead letters' vocabulary."""
SCHEMA_FIELDS = frozenset(
    {"event_id", "process", "case_id", "activity", "timestamp", "lifecycle", "resource", "team",
     "attributes"}
)
_MAX_LEN = {"event_id": 256, "process": 128, "case_id": 256, "activity": 512, "resource": 256,
            "team": 256, "timestamp": 64, "lifecycle": 16}
Headers = Sequence[tuple[str, bytes | None]]
_ATTRIBUTES_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode
"""What ``json.dumps(attrs, sort_keys=True, separators=(",", ":"))`` returns, byte for byte,
without building an encoder per call: the canonical text of an event's attributes. It raises
``ValueError`` for a non-finite number (which strict JSON, and so the store, cannot hold)."""


class FieldMapping(BaseModel):
    """Where each event field is in a source's messages: dotted paths into the JSON. It is
    also the config's ``[sources.mapping]`` table, key for key (``backlight.config``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str = "case_id"
    activity: str = "activity"
    timestamp: str = "timestamp"
    event_id: str = "event_id"
    process: str = "process"
    lifecycle: str = "lifecycle"
    resource: str = "resource"
    team: str = "team"
    attributes: str = "attributes"
    timezone: str | None = None
    """IANA zone for sources that send naive timestamps; without it they are rejected."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {zone!r}") from exc
        return zone

    @cached_property
    def is_identity(self) -> bool:
        """True when messages are in Backlight's own schema (no field is renamed)."""
        return all(getattr(self, name) == name for name in type(self).model_fields
                   if name != "timezone")

    @cached_property
    def zone(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None


IDENTITY = FieldMapping()


@dataclass(frozen=True)
class SourceSpec:
    """How to read one topic: its default process, field mapping and limits."""

    topic: str
    process: str | None = None
    mapping: FieldMapping = IDENTITY
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    """The deepest nesting of JSON objects and arrays a message may have (its outer object is 1)."""
    max_future_skew_us: int = DEFAULT_MAX_FUTURE_SKEW_US
    """How far after now (microseconds) an event's time may be; before 1970 is never accepted."""


# The plain schema's text fields with their length limits, for the typed decoder.
_CaseId = Annotated[str, msgspec.Meta(max_length=_MAX_LEN["case_id"])]
_Activity = Annotated[str, msgspec.Meta(max_length=_MAX_LEN["activity"])]
_Time = Annotated[str, msgspec.Meta(max_length=_MAX_LEN["timestamp"])]
_Process = Annotated[str, msgspec.Meta(max_length=_MAX_LEN["process"])]
_Lifecycle = Annotated[str, msgspec.Meta(max_length=_MAX_LEN["lifecycle"])]
_Resource = Annotated[str, msgspec.Meta(max_length=_MAX_LEN["resource"])]
_Team = Annotated[str, msgspec.Meta(max_length=_MAX_LEN["team"])]
_EventId = Annotated[str, msgspec.Meta(max_length=_MAX_LEN["event_id"])]


class _Plain(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A message in the plain schema, as the typed decoder reads it. What it cannot read
    (a wrong type, an unknown field, a text over its limit) goes to the general path."""

    case_id: _CaseId | int
    activity: _Activity
    timestamp: _Time
    process: _Process | None = None
    lifecycle: _Lifecycle | None = None
    resource: _Resource | None = None
    team: _Team | None = None
    attributes: dict[str, Any] | None = None
    event_id: _EventId | None = None


_read_plain = msgspec.json.Decoder(_Plain).decode


def decode(value: bytes | None, headers: Headers, spec: SourceSpec) -> CaseEvent:
    """Decode, map and validate one message; raise ``InvalidEvent`` with the reason if it fails.

    Nothing else escapes, whatever the bytes: the last guard turns an unforeseen error into
    ``undecodable`` (a bug to report, but never one that stops the consumer)."""
    if value is None:
        raise InvalidEvent("empty_message", "the message has no value (tombstone)")
    if len(value) > spec.max_bytes:
        raise InvalidEvent("too_large", f"{len(value)} bytes, the limit is {spec.max_bytes}")
    try:
        ce = _binary_cloudevent(headers)
        if ce is None and spec.mapping.is_identity:
            event = _plain_event(value, spec)
            if event is not None:
                return event
        return decode_general(value, spec, ce)
    except InvalidEvent:
        raise
    except RecursionError:
        raise InvalidEvent("too_deep", _too_deep(spec.max_depth)) from None
    except Exception as exc:  # the last guard: no message may stop the consumer
        raise InvalidEvent("undecodable", f"{type(exc).__name__}: {exc}"[:300]) from None


def _plain_event(value: bytes, spec: SourceSpec) -> CaseEvent | None:
    """The event of a valid plain-schema message, or None for anything else (which the general
    path then reads, accepting or naming the reason exactly as it always did).

    Hostile input costs no second look on the common path: msgspec refuses non-finite numbers
    and lone surrogates; a NUL can only be written as the escape ``\\u0000`` (looked for only
    when the bytes hold a backslash at all), and nesting deeper than the limit needs more
    brackets than the limit in the attributes' text (the only container below the message).
    Such a message is left to the general path, which checks exactly."""
    try:
        p = _read_plain(value)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # e.g. text not UTF-8
        return None
    if b"\\" in value and b"\\u0000" in value:
        return None
    case_id = p.case_id if isinstance(p.case_id, str) else str(p.case_id)
    process = spec.process if p.process is None else p.process
    lifecycle = "complete" if p.lifecycle is None else p.lifecycle
    if (process is None or len(case_id) > _MAX_LEN["case_id"] or len(process) > _MAX_LEN["process"]
            or lifecycle not in LIFECYCLES or p.event_id == ""
            or _blank(case_id) or _blank(p.activity) or _blank(p.timestamp) or _blank(process)):
        return None
    attributes = None
    if p.attributes:
        try:
            attributes = _ATTRIBUTES_JSON(p.attributes)
        except RecursionError:
            return None
        if attributes.count("{") + attributes.count("[") >= spec.max_depth:  # the message is 1
            return None
    try:
        time_us = _parse_time(p.timestamp, spec)
    except InvalidEvent:
        return None
    event_id = p.event_id
    if event_id is None:
        event_id = derive_event_id(process, case_id, p.activity, time_us, lifecycle, p.resource,
                                   p.team, attributes)
    return CaseEvent(event_id, process, case_id, p.activity, time_us, lifecycle, p.resource,
                     p.team, attributes)


def _blank(text: str) -> bool:
    return not text or text.isspace()


def decode_general(value: bytes, spec: SourceSpec, ce: dict[str, Any] | None) -> CaseEvent:
    """The general path of ``decode`` (after the size check, with the binary-mode CloudEvent
    attributes ``ce`` from the headers, if any): any JSON, CloudEvents, field mappings."""
    doc = _parse_json(value, spec.max_depth)
    if not isinstance(doc, dict):
        raise InvalidEvent("invalid_json", f"expected a JSON object, got {type(doc).__name__}")
    if ce is None and "specversion" in doc:
        ce, doc = _structured_cloudevent(doc, spec.max_depth)
    return _event(_fields(doc, spec.mapping), spec, ce or {})


def _non_finite(literal: str) -> Any:
    raise InvalidEvent("non_finite_number", f"{literal} is not a number JSON or the store can "
                                            "hold")


_JSON = json.JSONDecoder(parse_constant=_non_finite).decode


def _parse_json(value: bytes, max_depth: int) -> Any:
    """The JSON value of the bytes (UTF-8, -16 or -32, as ``json.loads`` reads them), refusing
    ``NaN``/``Infinity`` and nesting deeper than ``max_depth``."""
    try:
        doc = _JSON(value.decode(json.detect_encoding(value), "surrogatepass"))
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_json", f"not UTF-8 text ({exc.reason})") from None
    except RecursionError:
        raise InvalidEvent("too_deep", _too_deep(max_depth)) from None
    except ValueError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    if value.count(b"{") + value.count(b"[") > max_depth and _deeper_than(doc, max_depth):
        raise InvalidEvent("too_deep", _too_deep(max_depth))
    return doc


def _too_deep(max_depth: int) -> str:
    return f"objects and arrays nest deeper than {max_depth} levels (the source's max_depth)"


def _deeper_than(doc: Any, limit: int) -> bool:
    """Whether JSON objects and arrays nest deeper than ``limit`` (``doc`` itself is level 1);
    without recursion, and stopping at the first container beyond the limit."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is not dict and kind is not list:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in (node.values() if kind is dict else node))
    return False


def _binary_cloudevent(headers: Headers) -> dict[str, Any] | None:
    if not headers:
        return None
    ce: dict[str, Any] = {}
    for key, raw in headers:
        if key.startswith("ce_") and raw is not None:
            ce[key[3:]] = raw.decode("utf-8", "replace")
    if not ce:
        return None
    if ce.get("specversion") != "1.0":
        raise InvalidEvent("bad_cloudevent",
                           f"binary-mode specversion {ce.get('specversion')!r}, expected '1.0'")
    return ce


def _structured_cloudevent(doc: dict[str, Any], max_depth: int
                           ) -> tuple[dict[str, Any], dict[str, Any]]:
    if doc.get("specversion") != "1.0":
        raise InvalidEvent("bad_cloudevent", f"specversion {doc.get('specversion')!r}, "
                                             "expected '1.0'")
    if "data" in doc:
        data = doc["data"]
    elif "data_base64" in doc:
        try:
            text = base64.b64decode(doc["data_base64"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidEvent("bad_cloudevent", "data_base64 is not base64") from None
        try:  # the envelope is level 1, its data level 2
            data = _parse_json(text, max_depth - 1)
        except InvalidEvent as err:
            if err.code != "invalid_json":
                raise
            raise InvalidEvent("bad_cloudevent", f"data_base64 is not base64 of JSON: "
                                                 f"{err.detail}") from None
    else:
        raise InvalidEvent("cloudevent_without_data", "the CloudEvent has no data")
    if not isinstance(data, dict):
        raise InvalidEvent("bad_cloudevent",
                           f"data must be a JSON object, got {type(data).__name__}")
    ce = {k: v for k, v in doc.items() if k not in ("data", "data_base64")}
    return ce, data


def _or(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _get(doc: dict[str, Any], path: str) -> Any:
    if "." not in path:
        return doc.get(path)
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _text(name: str, value: Any, required: bool) -> str | None:
    if type(value) is str:  # the common case first: this runs ~8 times per message
        if len(value) > _MAX_LEN[name]:
            raise InvalidEvent("too_long", f"{name} has {len(value)} characters, "
                                           f"at most {_MAX_LEN[name]}")
        if required and (not value or value.isspace()):
            raise InvalidEvent("missing_field", f"{name} is empty")
        if not value.isascii() and _lone_surrogate(value):
            raise InvalidEvent("invalid_json", f"{name} holds a lone surrogate (an unpaired "
                                               "\\ud800-\\udfff escape): not Unicode text")
        if "\x00" in value:
            raise InvalidEvent("invalid_character", f"{name} holds a NUL character (\\u0000), "
                                                    "which no store can keep")
        return value
    if value is None:
        if required:
            raise InvalidEvent("missing_field", f"{name} is required")
        return None
    if name == "case_id" and type(value) is int:
        return _text(name, str(value), required)
    raise InvalidEvent("wrong_type", f"{name} must be a string, got {type(value).__name__}")


def _lone_surrogate(text: str) -> bool:
    """Whether the text holds a lone surrogate, which JSON's escapes allow but no UTF-8 store,
    hash or chat message can carry."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _fields(doc: dict[str, Any], m: FieldMapping) -> tuple[Any, ...]:
    """The raw values of the nine event fields, wherever the mapping says they are."""
    if m.is_identity:
        if not doc.keys() <= SCHEMA_FIELDS:
            unknown = sorted(map(str, doc.keys() - SCHEMA_FIELDS))
            raise InvalidEvent("unknown_field", ", ".join(unknown)[:200])
        get = doc.get
        return (get("case_id"), get("activity"), get("timestamp"), get("process"),
                get("lifecycle"), get("resource"), get("team"), get("attributes"),
                get("event_id"))
    return tuple(_get(doc, path) for path in (m.case_id, m.activity, m.timestamp, m.process,
                                                m.lifecycle, m.resource, m.team, m.attributes,
                                                m.event_id))


def _event(raw: tuple[Any, ...], spec: SourceSpec, ce: dict[str, Any]) -> CaseEvent:
    """Validate the nine raw field values (``_fields``' order) into an event."""
    case_id, activity, stamp, process, lifecycle, resource, team, attrs, event_id = raw
    if ce:
        case_id, stamp, event_id = (_or(case_id, ce.get("subject")), _or(stamp, ce.get("time")),
                                    _or(event_id, ce.get("id")))
    case_id = _text("case_id", case_id, True)
    activity = _text("activity", activity, True)
    stamp = _text("timestamp", stamp, True)
    process = _text("process", _or(process, spec.process), True)
    lifecycle = _text("lifecycle", lifecycle, False)
    if lifecycle is None:
        lifecycle = "complete"
    elif lifecycle not in LIFECYCLES:
        raise InvalidEvent("bad_lifecycle",
                           f"lifecycle {lifecycle[:40]!r} is not one of {', '.join(LIFECYCLES)}")
    resource = _text("resource", resource, False)
    team = _text("team", team, False)
    if attrs is not None and type(attrs) is not dict:
        raise InvalidEvent("wrong_type", f"attributes must be an object, got {type(attrs).__name__}")
    attributes = _attributes_text(attrs) if attrs else None
    time_us = _parse_time(stamp or "", spec)
    event_id = _text("event_id", event_id, False)
    if event_id == "":
        raise InvalidEvent("missing_field", "event_id is empty (leave it out to have one derived)")
    if event_id is None:
        event_id = derive_event_id(process or "", case_id or "", activity or "", time_us,
                                   lifecycle, resource, team, attributes)
    return CaseEvent(event_id, process or "", case_id or "", activity or "", time_us, lifecycle,
                     resource, team, attributes)


def _attributes_text(attrs: dict[str, Any]) -> str:
    """The canonical JSON text of the attributes, refusing what the store cannot hold."""
    try:
        text = _ATTRIBUTES_JSON(attrs)
    except ValueError:
        raise InvalidEvent("non_finite_number", "attributes hold a number beyond the float range "
                                                "(infinite), which JSON cannot carry") from None
    if "\\u0000" in text or "\\ud" in text:  # a NUL, or a surrogate (paired or not), is escaped
        _check_texts(attrs)
    return text


def _check_texts(node: Any) -> None:
    """Refuse a NUL or a lone surrogate in any key or string of the (depth-checked) JSON value."""
    if type(node) is str:
        if "\x00" in node:
            raise InvalidEvent("invalid_character", "attributes hold a NUL character (\\u0000) in "
                                                    "a key or a string, which no store can keep")
        if not node.isascii() and _lone_surrogate(node):
            raise InvalidEvent("invalid_json", "attributes hold a lone surrogate (an unpaired "
                                               "\\ud800-\\udfff escape): not Unicode text")
    elif type(node) is dict:
        for key, child in node.items():
            _check_texts(key)
            _check_texts(child)
    elif type(node) is list:
        for child in node:
            _check_texts(child)


_seen_now = [time.time_ns() // 1000]
"""The clock as last read. Time only moves on, so a time within this + the skew is within now +
the skew: the clock is read again only for a time beyond that (no clock read per message)."""


def _now_us() -> int:
    _seen_now[0] = now = time.time_ns() // 1000
    return now


def _parse_time(stamp: str, spec: SourceSpec) -> int:
    """Microseconds since the epoch of an RFC 3339 time, within 1970 .. now + the source's
    ``max_future_skew``: a time outside would hide the real data (windows count back from the
    latest event) or break every date computation downstream."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise InvalidEvent("bad_timestamp", f"{stamp[:64]!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        zone = spec.mapping.zone
        if zone is None:
            raise InvalidEvent("naive_timestamp", f"{stamp!r} has no UTC offset and the source "
                                                  "names no time zone")
        moment = moment.replace(tzinfo=zone)
    try:
        time_us = to_time_us(moment)
    except (OverflowError, ValueError):  # a naive time at the calendar's edge in the zone
        time_us = -1
    if time_us < 0 or (time_us > _seen_now[0] + spec.max_future_skew_us
                       and time_us > _now_us() + spec.max_future_skew_us):
        raise InvalidEvent("timestamp_out_of_range",
                           f"{stamp!r} is before 1970 or more than the source's max_future_skew "
                           "after now")
    return time_us


def derive_event_id(process: str, case_id: str, activity: str, time_us: int, lifecycle: str,
                    resource: str | None, team: str | None, attributes: str | None) -> str:
    """A deterministic id from the event's content, so a replayed message is stored once.

    Two messages with the same content (same case, activity, time, lifecycle, resource, team
    and attributes) are the same event: a source that needs them distinct must send event_id.
    """
    parts = (process, case_id, activity, str(time_us), lifecycle, resource or "", team or "",
             attributes or "")
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return "sha256:" + digest[:40]
