"""Every error the ingest package raises, in one place (callers catch these, never bare ones)."""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

from schemas.errors import BacklightError, InvalidEvent

__all__ = [
    "BacklightError", "BrokerError", "DeliveryFailed", "InvalidEvent", "KafkaUnavailable",
    "LogFileError", "RowRejected", "StoreError", "rejects_rows",
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


class StoreError(BacklightError):
    """The event store could not be opened, written or read. Written: transient (a database
    restarting or unreachable, a lock or statement timeout, a full disk; the same batch may
    succeed later), unless it is a ``RowRejected``."""


class RowRejected(StoreError):
    """The database refused a batch for the content of one of its rows (a NUL or a character
    it cannot encode in text, a value too long or out of range, a required value missing):
    the same rows will never be stored. ``reason`` is the database's own words, without the
    row's values."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def rejects_rows(exc: BaseException) -> bool:
    """Whether a driver's error on a write is the database refusing a row's content (a
    ``RowRejected``) rather than a transient failure: the one place that tells them apart.
    Content: SQL state classes 22 (data exception) and 23 (integrity: NOT NULL, CHECK) on
    PostgreSQL, ``DataError`` and ``IntegrityError`` on SQLite, and a value the driver cannot
    send at all (a lone surrogate in text, an integer beyond 64 bits). Everything else
    (connections, locks, timeouts, serialization failures, disk full, a missing table) is
    transient: the write is retried."""
    if isinstance(exc, (UnicodeEncodeError, OverflowError, sqlite3.DataError,
                        sqlite3.IntegrityError)):
        return True
    psycopg = sys.modules.get("psycopg")  # loaded only where a PostgreSQL store is open
    return psycopg is not None and isinstance(exc, (psycopg.DataError, psycopg.IntegrityError))


class LogFileError(BacklightError):
    """An event log file (XES, CSV, Parquet) could not be read as case events."""
