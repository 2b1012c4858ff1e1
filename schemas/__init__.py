"""Schemas: the contracts every other package agrees on, each stated once.

Owns the case event (``CaseEvent``, its lifecycles, its time in microseconds, the JSON Schema
in case-event.schema.json) and the decoding of Kafka messages into it (field mappings,
CloudEvents); the event frame's columns (``schemas.frame``); the alert contract (findings,
alerts, their status and severity order, changes, silences, acknowledgements, reviews); the
root of the error tree (``BacklightError``); and the lazy package surface the other packages
use (``schemas.lazy``).

The bottom layer: everything may import it, and it must never import anything of the project
(storage, ingest, mining, alerts or the ``backlight`` shell).
"""

from schemas.decode import IDENTITY, FieldMapping, SourceSpec, decode, derive_event_id
from schemas.errors import BacklightError, InvalidEvent
from schemas.event import LIFECYCLES, CaseEvent, format_time, to_time_us

__all__ = [
    "IDENTITY", "LIFECYCLES", "BacklightError", "CaseEvent", "FieldMapping", "InvalidEvent",
    "SourceSpec", "decode", "derive_event_id", "format_time", "to_time_us",
]
