"""The outbox (storage/outbox.py's ``OutboxQueue``) in the store's database, each query written
once for SQLite and PostgreSQL (storage/tables.py).

``claim`` picks each channel's oldest pending row that is due and that no other worker holds
and leases it in the same statement. On PostgreSQL the pick is ``FOR UPDATE SKIP LOCKED`` (a
head another worker is claiming right now is skipped, and with it its channel: only heads are
ever candidates); the row lock plus READ COMMITTED's re-check of the claim columns mean two
workers never hold one row. The re-check applies the locked row's own conditions to its latest
version but not the ``HEADS`` subquery (it keeps the statement's snapshot), so the status is
checked on the row itself too: a head another worker marked sent between this statement's
snapshot and its lock is not claimed and sent again. On SQLite the write transaction holds the
file. ``enqueue`` on PostgreSQL takes an advisory lock until its commit, so seqs are committed
in the order they are allocated and a channel's head is never overtaken by a row committed
later (SQLite's one writer gives that already).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.alerts import Notification
from storage.outbox import (
    COLUMNS,
    DEAD,
    HEADS,
    PENDING,
    POSTGRES_SCHEMA,
    SCHEMA,
    OutboxItem,
    claim_token,
    not_updated,
)
from storage.pg_session import PostgresSession
from storage.tables import Run, SQLiteTables, Tables
from storage.times import stored_time_opt, stored_us, wall_us

_ENQUEUE_LOCK = 0x6F7574626F78  # "outbox"
_US = timedelta(microseconds=1)
_INSERT = ("INSERT INTO outbox (id, channel, process, keys, payload, created_us, enqueued_us,"
           " next_attempt_us) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING")


class StoredOutbox:
    """The ``outbox`` table in a component's ``Tables`` (SQLite file or PostgreSQL database)."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self._sql = tables.dialect

    def enqueue(self, notifications: Iterable[Notification],
                payload_for: Callable[[Notification], bytes],
                now: datetime | None = None) -> int:
        """Persist notifications with their payloads (``payload_for``: the exact bytes to send)
        in one transaction; return how many were new (a notification already in the outbox,
        whatever its status, is left alone). ``now`` is the delivery clock (default: the wall
        clock): retries are given up counting from it. A new row is due at once (by the
        evaluation's clock or the delivery clock)."""
        enqueued = stored_us(now or datetime.now(UTC))
        rows = []
        for n in notifications:
            keys = json.dumps(list(dict.fromkeys(c.alert.key for c in n.changes)))
            created = stored_us(n.created_at)  # due at once whichever clock delivery runs on
            rows.append((n.id, n.channel, n.process, keys, payload_for(n), created,
                         enqueued, min(created, enqueued)))
        if not rows:
            return 0

        def work(run: Run) -> int:
            if self._sql.name == "postgresql":
                run.rows("SELECT pg_advisory_xact_lock(?)", (_ENQUEUE_LOCK,))
            return sum(run.count(_INSERT, row) for row in rows)
        return self.tables.write(f"enqueueing {len(rows)} notifications", work)

    def due(self, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Each channel's oldest pending notification, if it is due by ``now`` (oldest first)."""
        rows = self.tables.read("reading the outbox",
                                f"SELECT {COLUMNS} FROM outbox WHERE seq IN ({HEADS})"  # noqa: S608
                                " AND next_attempt_us <= ? ORDER BY seq LIMIT ?",
                                (stored_us(now), limit))
        return [OutboxItem._from_row(r) for r in rows]

    def claim(self, now: datetime, worker: str, lease: timedelta,
              limit: int = 100) -> list[OutboxItem]:
        """``due``, less the heads another worker holds, now held by ``worker`` for ``lease``
        of wall time (its own claims are renewed) under a new claim token, which the items
        carry. One write transaction: two workers never hold one notification, nor two of one
        channel."""
        wall = wall_us()
        sql = (f"UPDATE outbox SET claimed_by = ?, claimed_until_us = ?, claim_token = ?"  # noqa: S608
               f" WHERE seq IN (SELECT seq FROM outbox WHERE seq IN ({HEADS})"
               " AND status = 'pending' AND next_attempt_us <= ?"
               " AND (claimed_by IS NULL OR claimed_by = ? OR claimed_until_us <= ?)"
               f" ORDER BY seq LIMIT ?{self._sql.skip_locked}) RETURNING {COLUMNS}")
        args = (worker, wall + lease // _US, claim_token(), stored_us(now), worker, wall, limit)
        rows = self.tables.write("claiming from the outbox", lambda run: run.rows(sql, args))
        return sorted((OutboxItem._from_row(r) for r in rows), key=lambda i: i.seq)

    def release(self, worker: str) -> None:
        """Give up ``worker``'s claims on what it did not send (others may take them now)."""
        self.tables.write("releasing outbox claims", lambda run: run.count(
            "UPDATE outbox SET claimed_by = NULL, claimed_until_us = NULL, claim_token = NULL"
            " WHERE claimed_by = ?", (worker,)))

    def next_due_at(self) -> datetime | None:
        """When the earliest channel head no worker holds becomes due (None when none)."""
        rows = self.tables.read("reading the outbox",
                                f"SELECT MIN(next_attempt_us) FROM outbox WHERE seq IN ({HEADS})"  # noqa: S608
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
        rows = self.tables.read("reading the outbox", "SELECT channel, COUNT(*) FROM outbox"
                                " WHERE status = 'pending' GROUP BY channel ORDER BY channel")
        return {str(channel): int(n) for channel, n in rows}

    def counts(self) -> dict[tuple[str, str], int]:
        """Notifications per (channel, status): pending, sent, dead."""
        rows = self.tables.read("reading the outbox",
                                "SELECT channel, status, COUNT(*) FROM outbox GROUP BY 1, 2")
        return {(str(channel), str(status)): int(n) for channel, status, n in rows}

    def items(self, status: str | None = None, channel: str | None = None) -> list[OutboxItem]:
        """Rows in enqueue order, optionally of one status and channel (for listing and tests)."""
        sql = f"SELECT {COLUMNS} FROM outbox WHERE 1=1"  # noqa: S608
        args: list[str] = []
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        if channel is not None:
            sql, args = sql + " AND channel = ?", [*args, channel]
        rows = self.tables.read("reading the outbox", sql + " ORDER BY seq", args)
        return [OutboxItem._from_row(r) for r in rows]

    def close(self) -> None:
        """Close the connection."""
        self.tables.close()

    def _update(self, sql: str, args: Sequence[Any], token: str | None) -> None:
        if token is not None:
            sql, args = sql + " AND claim_token = ? AND status = 'pending'", (*args, token)

        def work(run: Run) -> None:
            if run.count(sql, args) != 1:
                raise not_updated(args[-1] if token is None else args[-2], token)
        self.tables.write("updating the outbox", work)


class Outbox(StoredOutbox):
    """The outbox in a SQLite file (WAL; safe beside the event store's connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(SQLiteTables(self.path, SCHEMA))


class PostgresOutbox(StoredOutbox):
    """The outbox in the PostgreSQL store's database (component ``outbox``)."""

    def __init__(self, url: str, session: PostgresSession | None = None) -> None:
        from storage.pg_tables import PostgresTables  # the driver only where it is used

        super().__init__(PostgresTables(url, POSTGRES_SCHEMA, session))
