"""Storage: every table Backlight keeps (events, read models, alert state, outbox, reviews,
marks), their migrations, and the connections to SQLite and PostgreSQL.

The domain packages use it through small interfaces: ``EventStore`` (storage/events.py),
``AlertState`` (storage/alert_state.py), ``OutboxQueue`` (storage/outbox.py) and
``ReadModelTables`` (storage/read_models.py), each opened from a store URL (storage/open.py).
Each interface has a SQLite implementation (``sqlite_*.py``) and a PostgreSQL one (``pg_*.py``)
that import what they share from the interface's module, never from each other. It stores
documents and rows; what they mean (folding events into figures, an alert's lifecycle) belongs
to the packages above.

Below the domain packages, above ``schemas``: it imports only ``schemas``, and must never
import ingest, mining, alerts or the ``backlight`` shell.

The public surface is re-exported here; each name loads its module on first use
(``schemas.lazy``), so that opening a SQLite store never loads the PostgreSQL driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.lazy import lazy_exports

if TYPE_CHECKING:
    from storage.alert_state import AlertState, evaluation_lease
    from storage.alert_tables import SQLiteAlertState
    from storage.errors import AlertStateError, LeaseLost, RowRejected, StoreError
    from storage.events import EventStore, ProcessCount, StoredEvent
    from storage.inspect import StoreCheck, inspect_store
    from storage.open import open_alert_state, open_outbox, open_store
    from storage.open_cases import OpenCase
    from storage.outbox import OutboxItem, OutboxQueue
    from storage.outbox_tables import Outbox
    from storage.pg_session import PostgresSession
    from storage.read_models import ReadModelTables
    from storage.sqlite_events import SQLiteStore
    from storage.urls import mask_url, parse_url, scrub

_HOMES: dict[str, tuple[str, ...]] = {
    "storage.alert_state": ("AlertState", "evaluation_lease"),
    "storage.errors": ("AlertStateError", "LeaseLost", "RowRejected", "StoreError"),
    "storage.events": ("EventStore", "ProcessCount", "StoredEvent"),
    "storage.inspect": ("StoreCheck", "inspect_store"),
    "storage.open": ("open_alert_state", "open_outbox", "open_store"),
    "storage.open_cases": ("OpenCase",),
    "storage.outbox": ("OutboxItem", "OutboxQueue"),
    "storage.pg_session": ("PostgresSession",),
    "storage.read_models": ("ReadModelTables",),
    "storage.alert_tables": ("SQLiteAlertState",),
    "storage.sqlite_events": ("SQLiteStore",),
    "storage.outbox_tables": ("Outbox",),
    "storage.urls": ("mask_url", "parse_url", "scrub"),
}

__all__ = [
    "AlertState", "AlertStateError", "EventStore", "LeaseLost", "OpenCase", "Outbox",
    "OutboxItem", "OutboxQueue", "PostgresSession", "ProcessCount", "ReadModelTables",
    "RowRejected", "SQLiteAlertState", "SQLiteStore", "StoreCheck", "StoreError", "StoredEvent",
    "evaluation_lease", "inspect_store", "mask_url", "open_alert_state", "open_outbox",
    "open_store", "parse_url", "scrub",
]

lazy_exports(__name__, _HOMES)
