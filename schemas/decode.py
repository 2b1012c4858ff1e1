"""Turn one Kafka message into a validated case event, or say exactly why it is not one.

Accepted: the plain JSON case event (see ``case-event.schema.json``), CloudEvents 1.0 in
structured mode (``specversion`` in the JSON, the event in ``data``) and in binary mode
(``ce_*`` headers, the event as the message value). A per-source ``FieldMapping`` says where
the fields are in messages of systems that do not speak the schema.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.errors import InvalidEvent
from schemas.event import LIFECYCLES, CaseEvent, to_time_us

DEFAULT_MAX_BYTES = 256 * 1024
SCHEMA_FIELDS = frozenset(
    {"event_id", "process", "case_id", "activity", "timestamp", "lifecycle", "resource", "team",
     "attributes"}
)
_MAX_LEN = {"event_id": 256, "process": 128, "case_id": 256, "activity": 512, "resource": 256,
            "team": 256, "timestamp": 64, "lifecycle": 16}
Headers = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True)
class FieldMapping:
    """Where each event field is in a source's messages: dotted paths into the JSON."""

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

    def __post_init__(self) -> None:
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {self.timezone!r}") from exc

    @cached_property
    def is_identity(self) -> bool:
        """True when messages are in Backlight's own schema (no field is renamed)."""
        return all(getattr(self, f.name) == f.name for f in fields(self) if f.name != "timezone")

    @cached_property
    def zone(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None


IDENTITY = FieldMapping()


@dataclass(frozen=True)
class SourceSpec:
    """How to read one topic: its default process, field mapping and size limit."""

    topic: str
    process: str | None = None
    mapping: FieldMapping = IDENTITY
    max_bytes: int = DEFAULT_MAX_BYTES


def decode(value: bytes | None, headers: Headers, spec: SourceSpec) -> CaseEvent:
    """Decode, map and validate one message; raise ``InvalidEvent`` with the reason if it fails."""
    if value is None:
        raise InvalidEvent("empty_message", "the message has no value (tombstone)")
    if len(value) > spec.max_bytes:
        raise InvalidEvent("too_large", f"{len(value)} bytes, the limit is {spec.max_bytes}")
    ce = _binary_cloudevent(headers)
    doc = _parse_json(value)
    if ce is None and "specversion" in doc:
        ce, doc = _structured_cloudevent(doc)
    return _validate(doc, spec, ce or {})


def _parse_json(value: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(value)
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid_json", f"not UTF-8 text ({exc.reason})") from None
    except ValueError as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    if not isinstance(doc, dict):
        raise InvalidEvent("invalid_json", f"expected a JSON object, got {type(doc).__name__}")
    return doc


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


def _structured_cloudevent(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    if doc.get("specversion") != "1.0":
        raise InvalidEvent("bad_cloudevent", f"specversion {doc.get('specversion')!r}, "
                                             "expected '1.0'")
    if "data" in doc:
        data = doc["data"]
    elif "data_base64" in doc:
        try:
            data = json.loads(base64.b64decode(doc["data_base64"], validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise InvalidEvent("bad_cloudevent", "data_base64 is not base64 of JSON") from None
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
        return value
    if value is None:
        if required:
            raise InvalidEvent("missing_field", f"{name} is required")
        return None
    if name == "case_id" and type(value) is int:
        return _text(name, str(value), required)
    raise InvalidEvent("wrong_type", f"{name} must be a string, got {type(value).__name__}")


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


def _validate(doc: dict[str, Any], spec: SourceSpec, ce: dict[str, Any]) -> CaseEvent:
    m = spec.mapping
    case_id, activity, stamp, process, lifecycle, resource, team, attrs, event_id = _fields(doc, m)
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
    attributes = json.dumps(attrs, sort_keys=True, separators=(",", ":")) if attrs else None
    time_us = _parse_time(stamp or "", m)
    event_id = _text("event_id", event_id, False)
    if event_id == "":
        raise InvalidEvent("missing_field", "event_id is empty (leave it out to have one derived)")
    if event_id is None:
        event_id = derive_event_id(process or "", case_id or "", activity or "", time_us,
                                   lifecycle, resource, team, attributes)
    return CaseEvent(event_id, process or "", case_id or "", activity or "", time_us, lifecycle,
                     resource, team, attributes)


def _parse_time(stamp: str, mapping: FieldMapping) -> int:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise InvalidEvent("bad_timestamp", f"{stamp[:64]!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        if mapping.zone is None:
            raise InvalidEvent("naive_timestamp", f"{stamp!r} has no UTC offset and the source "
                                                  "names no time zone")
        moment = moment.replace(tzinfo=mapping.zone)
    return to_time_us(moment)


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
