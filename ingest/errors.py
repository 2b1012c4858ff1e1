"""Every error the ingest package raises, in one place (callers catch these, never bare ones).
The store's errors are defined in storage/errors.py and re-exported here."""

from __future__ import annotations

from typing import Any

from schemas.errors import BacklightError, InvalidEvent
from storage.errors import RowRejected, StoreError, rejects_rows

__all__ = [
    "BacklightError", "BrokerError", "DeliveryFailed", "InvalidEvent", "KafkaUnavailable",
    "LogFileError", "RowRejected", "SimulationError", "StoreError", "rejects_rows",
]


class BrokerError(BacklightError):
    """The local Kafka broker could not be resolved, started or stopped."""


class KafkaUnavailable(BacklightError):
    """No Kafka broker answered at the configured bootstrap address."""


class DeliveryFailed(KafkaUnavailable):
    """The broker did not acknowledge some published messages (refused, or not delivered within
    the producer's delivery timeout); ``failed`` holds them, each with why
    (``ingest.transport.Undelivered``), and ``in_flight`` counts those not reported yet
    (the wait ended first; they are still being delivered). The rest were acknowledged."""

    def __init__(self, message: str, failed: list[Any], in_flight: int = 0) -> None:
        super().__init__(message)
        self.failed = failed
        self.in_flight = in_flight


class LogFileError(BacklightError):
    """An event log file (XES, CSV, Parquet) could not be read as case events."""


class SimulationError(BacklightError, ValueError):
    """The simulator was asked for something it cannot make (an unknown process or activity, a
    share outside 0-1, an anomaly that would change every case), or its flow table is broken."""
