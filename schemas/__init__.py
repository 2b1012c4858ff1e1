"""The case event contract: the dataclass, the JSON Schema, and decoding of Kafka messages."""

from schemas.decode import IDENTITY, FieldMapping, SourceSpec, decode, derive_event_id
from schemas.errors import BacklightError, InvalidEvent
from schemas.event import LIFECYCLES, CaseEvent, format_time, to_time_us

__all__ = [
    "IDENTITY", "LIFECYCLES", "BacklightError", "CaseEvent", "FieldMapping", "InvalidEvent",
    "SourceSpec", "decode", "derive_event_id", "format_time", "to_time_us",
]
