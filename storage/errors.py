"""Every error the storage package raises, in one place (callers catch these, never a driver's)."""

from __future__ import annotations

import sqlite3
import sys

from schemas.errors import BacklightError

__all__ = ["AlertStateError", "LeaseLost", "RowRejected", "StoreError", "rejects_rows"]


class StoreError(BacklightError):
    """The store could not be opened, written or read. Written: transient (a database
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


class AlertStateError(StoreError):
    """The alert state (alerts, silences, acknowledgements, reviews, outbox) cannot be read
    or written, or a person's action names something that does not exist."""


class LeaseLost(AlertStateError):
    """A worker wrote what it no longer holds: its evaluation lease or its outbox claim ran
    out and another worker took it over, so the write was refused (nothing changed)."""


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
