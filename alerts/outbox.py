"""The outbox: notifications persisted before they are sent, in the event store's SQLite file.

One row per notification (its id is the primary key, so enqueueing it again does nothing),
with the payload built at enqueue time, a status (pending, sent, dead), the attempts made, when
to try next and the last error (never a URL: delivery writes only status codes and error
kinds). Rows are sent per channel strictly in enqueue order: ``due`` offers only each channel's
oldest pending row, so a later message never overtakes an earlier one for the same alert.

Several delivery workers may share one outbox: a worker ``claim``s the heads it will send (a
lease on the wall clock, in the same write transaction that picks them), other workers skip
a claimed head and so its whole channel, and ``mark_sent`` / ``mark_failed`` end the claim. A
worker that dies mid-send leaves its claim to expire; only then may another send it again
(the receiver sees the same ``Idempotency-Key``). Claims are fenced: each ``claim`` gives its
rows a new token, and ``mark_sent`` / ``mark_failed`` given the token apply only while it
stands (``UPDATE ... WHERE id = ? AND claim_token = ?``), so a worker that was slow past its
lease cannot overwrite the outcome of the worker that took the row over (``LeaseLost``). The
same queue on PostgreSQL is alerts/pg_outbox.py; ``open_outbox(url)`` opens the one beside the
store a URL names.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from alerts.channels.text import encode
from alerts.errors import AlertStateError, LeaseLost
from ingest.migrations import Migration, Schema, migrate_sqlite
from ingest.pg_session import PostgresSession
from ingest.sqlite import connect, transaction
from schemas.alerts import Notification

PENDING, SENT, DEAD = "pending", "sent", "dead"

COMPONENT = "outbox"
"""The outbox's row in the store's ``schema_version`` table."""
SCHEMA = Schema(COMPONENT, "the outbox", "outbox", (
    Migration(1, "the outbox with per-channel order", ("""CREATE TABLE IF NOT EXISTS outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        channel         TEXT NOT NULL,
        process         TEXT NOT NULL,
        keys            TEXT NOT NULL,
        payload         BLOB NOT NULL,
        status          TEXT NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_us      INTEGER NOT NULL,
        enqueued_us     INTEGER NOT NULL,
        next_attempt_us INTEGER NOT NULL,
        sent_us         INTEGER,
        last_error      TEXT)""",
     "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, channel, seq)")),
    Migration(2, "claims by delivery workers", (
        "ALTER TABLE outbox ADD COLUMN claimed_by TEXT",
        "ALTER TABLE outbox ADD COLUMN claimed_until_us INTEGER")),
    Migration(3, "fenced claims: a token per claim", (
        "ALTER TABLE outbox ADD COLUMN claim_token TEXT",)),
), AlertStateError)
"""The outbox's tables in a SQLite file, versioned (ingest/migrations.py runs the steps)."""
_COLUMNS = ("seq, id, channel, process, keys, payload, status, attempts, created_us,"
            " enqueued_us, next_attempt_us, sent_us, last_error, claim_token")


_US_DELTA = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    if moment.tzinfo is None:
        raise AlertStateError("outbox times must carry a time zone")
    return (moment - _EPOCH) // _US_DELTA


def _at(us: int) -> datetime:
    return _EPOCH + us * _US_DELTA


def _time(us: int | None) -> datetime | None:
    return None if us is None else _at(us)


@dataclass(frozen=True)
class OutboxItem:
    """One persisted notification and where it stands."""

    seq: int
    id: str
    channel: str
    process: str
    keys: tuple[str, ...]
    """The alert keys the notification is about."""
    payload: bytes
    """The exact body to send (compact UTF-8 JSON)."""
    status: str
    attempts: int
    created_at: datetime
    """When the evaluation that made it ran (its clock may be simulated)."""
    enqueued_at: datetime
    """When it entered the outbox, on the delivery clock: retries are given up counting from here."""
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    claim_token: str | None = None
    """The token of the claim it was read under: ``mark_sent`` / ``mark_failed`` given it
    apply only while that claim stands (not after another worker took the row over)."""

    @classmethod
    def _from_row(cls, row: Sequence[Any]) -> OutboxItem:
        (seq, id_, channel, process, keys, payload, status, attempts, created, enqueued, nxt,
         sent, err, token) = row
        return cls(seq=seq, id=id_, channel=channel, process=process,
                   keys=tuple(json.loads(keys)), payload=bytes(payload), status=status,
                   attempts=attempts, created_at=_at(created), enqueued_at=_at(enqueued),
                   next_attempt_at=_at(nxt), sent_at=_time(sent), last_error=err,
                   claim_token=token)


def wall_us() -> int:
    """The wall clock in microseconds: claims expire on it, whatever clock delivery runs on."""
    return time.time_ns() // 1000


class OutboxQueue(Protocol):
    """What delivery and the evaluator need of an outbox (SQLite here, PostgreSQL in
    alerts/pg_outbox.py); the methods behave as ``Outbox``'s do."""

    def enqueue(self, notifications: Iterable[Notification],
                payload_for: Callable[[Notification], Mapping[str, Any]],
                now: datetime | None = None) -> int: ...

    def due(self, now: datetime, limit: int = 100) -> list[OutboxItem]: ...

    def claim(self, now: datetime, worker: str, lease: timedelta,
              limit: int = 100) -> list[OutboxItem]: ...

    def release(self, worker: str) -> None: ...

    def next_due_at(self) -> datetime | None: ...

    def mark_sent(self, id: str, at: datetime, claim_token: str | None = None) -> None: ...

    def mark_failed(self, id: str, error: str, next_attempt_at: datetime, dead: bool,
                    claim_token: str | None = None) -> None: ...

    def depth(self) -> dict[str, int]: ...

    def counts(self) -> dict[tuple[str, str], int]:
        """Notifications per (channel, status): pending, sent, dead."""
        ...

    def items(self, status: str | None = None,
              channel: str | None = None) -> list[OutboxItem]: ...

    def close(self) -> None: ...


def open_outbox(store_url: str, session: PostgresSession | None = None) -> OutboxQueue:
    """The outbox beside the event store a URL names (``sqlite:///file.db`` or
    ``postgresql://...``, its connection with ``session``'s limits, by default the defaults)."""
    scheme = store_url.partition("://")[0]
    if scheme in ("postgresql", "postgres"):
        from alerts.pg_outbox import PostgresOutbox  # psycopg only where it is used

        return PostgresOutbox(store_url, session)
    if scheme == "sqlite":
        return Outbox(store_url)
    # The URL is not echoed: a database URL may carry a password.
    raise AlertStateError(f"store url: unknown scheme {scheme!r} (use sqlite:///... or "
                          "postgresql://...)")


def _path(where: str | Path) -> Path:
    text = str(where)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    if not text or "://" in text:
        raise AlertStateError("the outbox needs a SQLite file: sqlite:///path/to/file.db")
    return Path(text)


_HEADS = "SELECT MIN(seq) FROM outbox WHERE status = 'pending' GROUP BY channel"


class Outbox:
    """The ``outbox`` table of a SQLite file (WAL; safe beside the event store's connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = _path(path)
        self._lock = threading.Lock()
        try:
            self._db = connect(self.path)
            migrate_sqlite(self._db, str(self.path), SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise AlertStateError(f"cannot open the outbox in {self.path}: {exc}") from exc

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    def enqueue(self, notifications: Iterable[Notification],
                payload_for: Callable[[Notification], Mapping[str, Any]],
                now: datetime | None = None) -> int:
        """Persist notifications with their payloads in one transaction; return how many were
        new (a notification already in the outbox, whatever its status, is left alone).
        ``now`` is the delivery clock (default: the wall clock): retries are given up counting
        from it. A new row is due at once (by the evaluation's clock or the delivery clock)."""
        enqueued = _us(now or datetime.now(UTC))
        rows = []
        for n in notifications:
            keys = json.dumps(list(dict.fromkeys(c.alert.key for c in n.changes)))
            created = _us(n.created_at)  # due at once whichever clock delivery runs on
            rows.append((n.id, n.channel, n.process, keys, encode(payload_for(n)), created,
                         enqueued, min(created, enqueued)))
        if not rows:
            return 0
        try:
            with self._lock, self._transaction():
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT INTO outbox (id, channel, process, keys, payload, created_us,"
                    " enqueued_us, next_attempt_us) VALUES (?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (id) DO NOTHING", rows)
                return self._db.total_changes - before
        except sqlite3.Error as exc:
            raise AlertStateError(f"enqueueing {len(rows)} notifications failed: {exc}") from exc

    def due(self, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Each channel's oldest pending notification, if it is due by ``now`` (oldest first)."""
        sql = (f"SELECT {_COLUMNS} FROM outbox WHERE seq IN ({_HEADS})"  # noqa: S608
               " AND next_attempt_us <= ? ORDER BY seq LIMIT ?")
        return [OutboxItem._from_row(r) for r in self._query(sql, (_us(now), limit))]

    def claim(self, now: datetime, worker: str, lease: timedelta,
              limit: int = 100) -> list[OutboxItem]:
        """``due``, less the heads another worker holds, now held by ``worker`` for ``lease``
        of wall time (its own claims are renewed) under a new claim token, which the items
        carry. One write transaction: two workers never hold one notification, nor two of one
        channel."""
        wall = wall_us()
        sql = (f"UPDATE outbox SET claimed_by = ?, claimed_until_us = ?, claim_token = ?"  # noqa: S608
               f" WHERE seq IN (SELECT seq FROM outbox WHERE seq IN ({_HEADS})"
               " AND next_attempt_us <= ?"
               " AND (claimed_by IS NULL OR claimed_by = ? OR claimed_until_us <= ?)"
               f" ORDER BY seq LIMIT ?) RETURNING {_COLUMNS}")
        args = (worker, wall + lease // _US_DELTA, claim_token(), _us(now), worker, wall, limit)
        try:
            with self._lock, self._transaction():
                rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise AlertStateError(f"claiming from the outbox failed: {exc}") from exc
        return sorted((OutboxItem._from_row(r) for r in rows), key=lambda i: i.seq)

    def release(self, worker: str) -> None:
        """Give up ``worker``'s claims on what it did not send (others may take them now)."""
        try:
            with self._lock, self._transaction():
                self._db.execute("UPDATE outbox SET claimed_by = NULL, claimed_until_us = NULL,"
                                 " claim_token = NULL WHERE claimed_by = ?", (worker,))
        except sqlite3.Error as exc:
            raise AlertStateError(f"releasing outbox claims failed: {exc}") from exc

    def next_due_at(self) -> datetime | None:
        """When the earliest channel head no worker holds becomes due (None when none)."""
        rows = self._query(f"SELECT MIN(next_attempt_us) FROM outbox WHERE seq IN ({_HEADS})"  # noqa: S608
                           " AND (claimed_by IS NULL OR claimed_until_us <= ?)", (wall_us(),))
        return _time(rows[0][0]) if rows else None

    def mark_sent(self, id: str, at: datetime, claim_token: str | None = None) -> None:
        """The receiver acknowledged it: never send it again. With ``claim_token``, only while
        that claim stands (``LeaseLost`` once another worker took the row over)."""
        self._update("UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_us = ?,"
                     " last_error = NULL, claimed_by = NULL, claimed_until_us = NULL,"
                     " claim_token = NULL WHERE id = ?", (_us(at), id), claim_token)

    def mark_failed(self, id: str, error: str, next_attempt_at: datetime, dead: bool,
                    claim_token: str | None = None) -> None:
        """An attempt failed: try again at ``next_attempt_at``, or give up (``dead``). With
        ``claim_token``, only while that claim stands, as ``mark_sent``."""
        self._update("UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?,"
                     " next_attempt_us = ?, claimed_by = NULL, claimed_until_us = NULL,"
                     " claim_token = NULL WHERE id = ?",
                     (DEAD if dead else PENDING, error[:500], _us(next_attempt_at), id),
                     claim_token)

    def depth(self) -> dict[str, int]:
        """Pending notifications per channel."""
        rows = self._query("SELECT channel, COUNT(*) FROM outbox WHERE status = 'pending'"
                           " GROUP BY channel ORDER BY channel", ())
        return {channel: n for channel, n in rows}

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self._query("SELECT channel, status, COUNT(*) FROM outbox GROUP BY 1, 2", ())
        return {(str(channel), str(status)): int(n) for channel, status, n in rows}

    def items(self, status: str | None = None, channel: str | None = None) -> list[OutboxItem]:
        """Rows in enqueue order, optionally of one status and channel (for listing and tests)."""
        sql = f"SELECT {_COLUMNS} FROM outbox WHERE 1=1"  # noqa: S608
        args: list[str] = []
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        if channel is not None:
            sql, args = sql + " AND channel = ?", [*args, channel]
        return [OutboxItem._from_row(r) for r in self._query(sql + " ORDER BY seq", tuple(args))]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise AlertStateError(f"reading the outbox failed: {exc}") from exc

    def _update(self, sql: str, args: tuple[Any, ...], token: str | None) -> None:
        if token is not None:
            sql, args = sql + " AND claim_token = ? AND status = 'pending'", (*args, token)
        try:
            with self._lock, self._transaction():
                if self._db.execute(sql, args).rowcount != 1:
                    raise _not_updated(args[-1] if token is None else args[-2], token)
        except sqlite3.Error as exc:
            raise AlertStateError(f"updating the outbox failed: {exc}") from exc


def claim_token() -> str:
    """A fresh claim token (one per ``claim`` call)."""
    return uuid.uuid4().hex


def _not_updated(id: str, token: str | None) -> AlertStateError:
    """Why marking a notification changed nothing: it is not there, or (with a token) the claim
    it was read under no longer stands."""
    if token is None:
        return AlertStateError(f"no notification {id!r} in the outbox")
    return LeaseLost(f"notification {id!r}: its claim was taken over by another worker (or it"
                     " is no longer pending), so this worker's outcome is not recorded")
