"""Every error the ingest package raises, in one place (callers catch these, never bare ones)."""

from __future__ import annotations

from schemas.errors import BacklightError, InvalidEvent

__all__ = [
    "BacklightError", "BrokerError", "InvalidEvent", "KafkaUnavailable", "LogFileError", "StoreError",
]


class BrokerError(BacklightError):
    """The local Kafka broker could not be resolved, started or stopped."""


class KafkaUnavailable(BacklightError):
    """No Kafka broker answered at the configured bootstrap address."""


class StoreError(BacklightError):
    """The event store could not be opened, written or read."""


class LogFileError(BacklightError):
    """An event log file (XES, CSV, Parquet) could not be read as case events."""
