"""The outbox in the PostgreSQL store's database: the same table and behaviour as ``Outbox``
(storage/outbox.py, storage/sqlite_outbox.py) for delivery workers on several hosts.

Times are BIGINT microseconds since the epoch, payloads BYTEA, keys JSON text. ``claim`` picks
each channel's oldest pending row that is due and that no other worker holds, with ``SELECT
... FOR UPDATE SKIP LOCKED`` (a head another worker is claiming right now is skipped, and with
it its channel: only heads are ever candidates), and leases it in the same statement; the row
lock plus READ COMMITTED's re-check of the claim columns mean two workers never hold one row;
a claim's token fences ``mark_sent`` / ``mark_failed`` as in storage/outbox.py.
``enqueue`` takes an advisory lock until its commit, so seqs are committed in the order they
are allocated and a channel's head is never overtaken by a row committed later.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from schemas.alerts import Notification
from storage.errors import AlertStateError
from storage.migrations import Migration, Schema
from storage.outbox import (
    COLUMNS,
    DEAD,
    HEADS,
    PENDING,
    OutboxItem,
    claim_token,
    not_updated,
)
from storage.pg_tables import PgTables
from storage.times import stored_time_opt, stored_us, wall_us

_ENQUEUE_LOCK = 0x6F7574626F78  # "outbox"
_US = timedelta(microseconds=1)

STEPS = (
    Migration(1, "the outbox with per-channel order and claims by delivery workers", (
        """CREATE TABLE IF NOT EXISTS outbox (
            seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id               TEXT NOT NULL UNIQUE,
            channel          TEXT NOT NULL,
            process          TEXT NOT NULL,
            keys             TEXT NOT NULL,
            payload          BYTEA NOT NULL,
            status           TEXT NOT NULL DEFAULT 'pending',
            attempts         INTEGER NOT NULL DEFAULT 0,
            created_us       BIGINT NOT NULL,
            enqueued_us      BIGINT NOT NULL,
            next_attempt_us  BIGINT NOT NULL,
            sent_us          BIGINT,
            last_error       TEXT,
            claimed_by       TEXT,
            claimed_until_us BIGINT)""",
        "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, channel, seq)",
    )),
    Migration(2, "fenced claims: a token per claim", (
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claim_token TEXT",)),
)
_INSERT = (
    "INSERT INTO outbox (id, channel, process, keys, payload, created_us, enqueued_us,"
    " next_attempt_us) SELECT id, channel, process, keys, payload, created_us, enqueued_us,"
    " next_attempt_us FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bytea[],"
    " %s::bigint[], %s::bigint[], %s::bigint[]) WITH ORDINALITY AS new(id, channel, process,"
    " keys, payload, created_us, enqueued_us, next_attempt_us, n) ORDER BY n"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)
_CLAIM = (
    f"WITH heads AS (SELECT seq FROM outbox WHERE seq IN ({HEADS})"  # noqa: S608 (constants)
    " AND next_attempt_us <= %(now)s AND (claimed_by IS NULL OR claimed_by = %(worker)s"
    " OR claimed_until_us <= %(wall)s) ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " UPDATE outbox SET claimed_by = %(worker)s, claimed_until_us = %(until)s,"
    " claim_token = %(token)s FROM heads"
    " WHERE outbox.seq = heads.seq RETURNING "
    + ", ".join(f"outbox.{c.strip()}" for c in COLUMNS.split(","))
)


class PostgresOutbox(PgTables):
    """The ``outbox`` table of the PostgreSQL store's database (component ``outbox``)."""

    schema = Schema("outbox", "the outbox", "outbox", STEPS, AlertStateError)

    def enqueue(self, notifications: Iterable[Notification],
                payload_for: Callable[[Notification], bytes],
                now: datetime | None = None) -> int:
        """As ``Outbox.enqueue``: the new ones are stored in one transaction; how many."""
        enqueued = stored_us(now or datetime.now(UTC))
        rows = []
        for n in notifications:
            keys = json.dumps(list(dict.fromkeys(c.alert.key for c in n.changes)))
            created = stored_us(n.created_at)
            rows.append((n.id, n.channel, n.process, keys, payload_for(n), created,
                         enqueued, min(created, enqueued)))
        if not rows:
            return 0
        columns = [list(c) for c in zip(*rows, strict=True)]

        def work(conn: psycopg.Connection[Any]) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ENQUEUE_LOCK,))
            return len(conn.execute(_INSERT, columns).fetchall())
        return self._write(f"enqueueing {len(rows)} notifications", work)

    def due(self, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Each channel's oldest pending notification, if it is due by ``now`` (oldest first)."""
        rows = self._read("reading the outbox",
                          f"SELECT {COLUMNS} FROM outbox WHERE seq IN ({HEADS})"  # noqa: S608
                          " AND next_attempt_us <= %s ORDER BY seq LIMIT %s", (stored_us(now), limit))
        return [OutboxItem._from_row(r) for r in rows]

    def claim(self, now: datetime, worker: str, lease: timedelta,
              limit: int = 100) -> list[OutboxItem]:
        """As ``Outbox.claim``: what is due and held by no other worker, now held by ``worker``."""
        wall = wall_us()
        args = {"now": stored_us(now), "worker": worker, "wall": wall, "limit": limit,
                "until": wall + lease // _US, "token": claim_token()}

        def work(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(_CLAIM, args).fetchall()
        rows = self._write("claiming from the outbox", work)
        return sorted((OutboxItem._from_row(r) for r in rows), key=lambda i: i.seq)

    def release(self, worker: str) -> None:
        """Give up ``worker``'s claims on what it did not send."""
        self._write("releasing outbox claims", lambda conn: conn.execute(
            "UPDATE outbox SET claimed_by = NULL, claimed_until_us = NULL, claim_token = NULL"
            " WHERE claimed_by = %s", (worker,)))

    def next_due_at(self) -> datetime | None:
        """When the earliest channel head no worker holds becomes due (None when none)."""
        rows = self._read("reading the outbox",
                          f"SELECT MIN(next_attempt_us) FROM outbox WHERE seq IN ({HEADS})"  # noqa: S608
                          " AND (claimed_by IS NULL OR claimed_until_us <= %s)", (wall_us(),))
        return stored_time_opt(rows[0][0]) if rows else None

    def mark_sent(self, id: str, at: datetime, claim_token: str | None = None) -> None:
        """As ``Outbox.mark_sent`` (fenced by ``claim_token`` when given)."""
        self._update("UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_us = %s,"
                     " last_error = NULL, claimed_by = NULL, claimed_until_us = NULL,"
                     " claim_token = NULL WHERE id = %s", (stored_us(at), id), claim_token)

    def mark_failed(self, id: str, error: str, next_attempt_at: datetime, dead: bool,
                    claim_token: str | None = None) -> None:
        """As ``Outbox.mark_failed`` (fenced by ``claim_token`` when given)."""
        self._update("UPDATE outbox SET status = %s, attempts = attempts + 1, last_error = %s,"
                     " next_attempt_us = %s, claimed_by = NULL, claimed_until_us = NULL,"
                     " claim_token = NULL WHERE id = %s",
                     (DEAD if dead else PENDING, error[:500], stored_us(next_attempt_at), id),
                     claim_token)

    def depth(self) -> dict[str, int]:
        """Pending notifications per channel."""
        rows = self._read("reading the outbox", "SELECT channel, COUNT(*) FROM outbox"
                          " WHERE status = 'pending' GROUP BY channel ORDER BY channel")
        return {channel: int(n) for channel, n in rows}

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self._read("reading the outbox",
                          "SELECT channel, status, COUNT(*) FROM outbox GROUP BY 1, 2")
        return {(str(channel), str(status)): int(n) for channel, status, n in rows}

    def items(self, status: str | None = None, channel: str | None = None) -> list[OutboxItem]:
        """Rows in enqueue order, optionally of one status and channel."""
        sql = f"SELECT {COLUMNS} FROM outbox WHERE true"  # noqa: S608
        args: list[str] = []
        if status is not None:
            sql, args = sql + " AND status = %s", [*args, status]
        if channel is not None:
            sql, args = sql + " AND channel = %s", [*args, channel]
        rows = self._read("reading the outbox", sql + " ORDER BY seq", args)
        return [OutboxItem._from_row(r) for r in rows]

    def _update(self, sql: str, args: tuple[Any, ...], token: str | None) -> None:
        if token is not None:
            sql, args = sql + " AND claim_token = %s AND status = 'pending'", (*args, token)

        def work(conn: psycopg.Connection[Any]) -> None:
            if conn.execute(sql, args).rowcount != 1:
                raise not_updated(args[-1] if token is None else args[-2], token)
        self._write("updating the outbox", work)
