"""The outbox in a SQLite file, normally the event store's own (the ``OutboxQueue`` of
storage/outbox.py, which says how it behaves)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.alerts import Notification
from storage.errors import AlertStateError
from storage.migrations import migrate_sqlite
from storage.outbox import (
    COLUMNS,
    DEAD,
    HEADS,
    PENDING,
    SCHEMA,
    OutboxItem,
    claim_token,
    not_updated,
)
from storage.sqlite import connect, transaction
from storage.times import stored_time_opt, stored_us, wall_us

_US_DELTA = timedelta(microseconds=1)


class Outbox:
    """The ``outbox`` table of a SQLite file (WAL; safe beside the event store's connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = connect(self.path)
            migrate_sqlite(self._db, str(self.path), SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise AlertStateError(f"cannot open the outbox in {self.path}: {exc}") from exc

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    def enqueue(self, notifications: Iterable[Notification],
                payload_for: Callable[[Notification], bytes],
                now: datetime | None = None) -> int:
        """Persist notifications with their payloads in one transaction; return how many were
        new (a notification already in the outbox, whatever its status, is left alone).
        ``now`` is the delivery clock (default: the wall clock): retries are given up counting
        from it. A new row is due at once (by the evaluation's clock or the delivery clock)."""
        enqueued = stored_us(now or datetime.now(UTC))
        rows = []
        for n in notifications:
            keys = json.dumps(list(dict.fromkeys(c.alert.key for c in n.changes)))
            created = stored_us(n.created_at)  # due at once whichever clock delivery runs on
            rows.append((n.id, n.channel, n.process, keys, payload_for(n), created,
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
        sql = (f"SELECT {COLUMNS} FROM outbox WHERE seq IN ({HEADS})"  # noqa: S608
               " AND next_attempt_us <= ? ORDER BY seq LIMIT ?")
        return [OutboxItem._from_row(r) for r in self._query(sql, (stored_us(now), limit))]

    def claim(self, now: datetime, worker: str, lease: timedelta,
              limit: int = 100) -> list[OutboxItem]:
        """``due``, less the heads another worker holds, now held by ``worker`` for ``lease``
        of wall time (its own claims are renewed) under a new claim token, which the items
        carry. One write transaction: two workers never hold one notification, nor two of one
        channel."""
        wall = wall_us()
        sql = (f"UPDATE outbox SET claimed_by = ?, claimed_until_us = ?, claim_token = ?"  # noqa: S608
               f" WHERE seq IN (SELECT seq FROM outbox WHERE seq IN ({HEADS})"
               " AND next_attempt_us <= ?"
               " AND (claimed_by IS NULL OR claimed_by = ? OR claimed_until_us <= ?)"
               f" ORDER BY seq LIMIT ?) RETURNING {COLUMNS}")
        args = (worker, wall + lease // _US_DELTA, claim_token(), stored_us(now), worker, wall, limit)
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
        rows = self._query(f"SELECT MIN(next_attempt_us) FROM outbox WHERE seq IN ({HEADS})"  # noqa: S608
                           " AND (claimed_by IS NULL OR claimed_until_us <= ?)", (wall_us(),))
        return stored_time_opt(rows[0][0]) if rows else None

    def mark_sent(self, id: str, at: datetime, claim_token: str | None = None) -> None:
        """The receiver acknowledged it: never send it again. With ``claim_token``, only while
        that claim stands (``LeaseLost`` once another worker took the row over)."""
        self._update("UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_us = ?,"
                     " last_error = NULL, claimed_by = NULL, claimed_until_us = NULL,"
                     " claim_token = NULL WHERE id = ?", (stored_us(at), id), claim_token)

    def mark_failed(self, id: str, error: str, next_attempt_at: datetime, dead: bool,
                    claim_token: str | None = None) -> None:
        """An attempt failed: try again at ``next_attempt_at``, or give up (``dead``). With
        ``claim_token``, only while that claim stands, as ``mark_sent``."""
        self._update("UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?,"
                     " next_attempt_us = ?, claimed_by = NULL, claimed_until_us = NULL,"
                     " claim_token = NULL WHERE id = ?",
                     (DEAD if dead else PENDING, error[:500], stored_us(next_attempt_at), id),
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
        sql = f"SELECT {COLUMNS} FROM outbox WHERE 1=1"  # noqa: S608
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
                    raise not_updated(args[-1] if token is None else args[-2], token)
        except sqlite3.Error as exc:
            raise AlertStateError(f"updating the outbox failed: {exc}") from exc
