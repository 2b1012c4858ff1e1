"""Opening what a store URL names: the event store, the alert state, the outbox. Each picks
the SQLite or the PostgreSQL implementation of one interface; the PostgreSQL driver is loaded
only for a ``postgresql://`` URL."""

from __future__ import annotations

from pathlib import Path

from storage.alert_state import AlertState
from storage.alert_tables import SQLiteAlertState
from storage.events import EventStore
from storage.outbox import OutboxQueue
from storage.outbox_tables import Outbox
from storage.pg_session import PostgresSession
from storage.sqlite_events import SQLiteStore
from storage.urls import parse_url


def open_store(url: str, session: PostgresSession | None = None) -> EventStore:
    """Open the store a URL names: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or
    ``postgresql://user:password@host:port/database`` (libpq's URL, query options included;
    its connections get ``session``'s timeouts and keepalives, by default the defaults);
    the schema is created or upgraded on the way."""
    kind, target = parse_url(url)
    if kind == "postgresql":
        from storage.pg_events import PostgresStore

        return PostgresStore(target, session=session)
    return SQLiteStore(target)


def open_alert_state(store_url: str, session: PostgresSession | None = None) -> AlertState:
    """Open the alert state beside the event store a URL names (``sqlite:///file.db``, or
    ``postgresql://...``: the tables in the store's database, its connection with
    ``session``'s limits, by default the defaults)."""
    kind, target = parse_url(store_url)
    if kind == "postgresql":
        from storage.alert_tables import PostgresAlertState

        return PostgresAlertState(target, session)
    return SQLiteAlertState(target)


def open_outbox(store_url: str, session: PostgresSession | None = None) -> OutboxQueue:
    """The outbox beside the event store a URL names (``sqlite:///file.db`` or
    ``postgresql://...``, its connection with ``session``'s limits, by default the defaults)."""
    kind, target = parse_url(store_url)
    if kind == "postgresql":
        from storage.outbox_tables import PostgresOutbox

        return PostgresOutbox(target, session)
    return Outbox(Path(target))
