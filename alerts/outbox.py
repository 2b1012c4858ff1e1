"""The outbox: notifications persisted before they are sent, in the event store's SQLite file.

One row per notification (its id is the primary key, so enqueueing it again does nothing),
with the payload built at enqueue time, a status (pending, sent, dead), the attempts made, when
to try next and the last error (never a URL: delivery writes only status codes and error
kinds). Rows are sent per channel strictly in enqueue order: ``due`` offers only each channel's
oldest pending row, so a later message never overtakes an earlier one for the same alert.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerts.channels.text import encode
from alerts.errors import AlertStateError
from ingest.sqlite import connect, transaction
from schemas.alerts import Notification

PENDING, SENT, DEAD = "pending", "sent", "dead"

_DDL = """
CREATE TABLE IF NOT EXISTS outbox (
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
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, channel, seq)
"""
_COLUMNS = ("seq, id, channel, process, keys, payload, status, attempts, created_us,"
            " enqueued_us, next_attempt_us, sent_us, last_error")


def _us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise AlertStateError("outbox times must carry a time zone")
    return int(moment.timestamp() * 1_000_000)


def _time(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


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

    @classmethod
    def _from_row(cls, row: tuple[Any, ...]) -> OutboxItem:
        (seq, id_, channel, process, keys, payload, status, attempts, created, enqueued, nxt,
         sent, err) = row
        return cls(seq=seq, id=id_, channel=channel, process=process,
                   keys=tuple(json.loads(keys)), payload=bytes(payload), status=status,
                   attempts=attempts, created_at=datetime.fromtimestamp(created / 1e6, UTC),
                   enqueued_at=datetime.fromtimestamp(enqueued / 1e6, UTC),
                   next_attempt_at=datetime.fromtimestamp(nxt / 1e6, UTC),
                   sent_at=_time(sent), last_error=err)


def _path(where: str | Path) -> Path:
    text = str(where)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    if not text:
        raise AlertStateError("the outbox needs a SQLite file: sqlite:///path/to/file.db")
    return Path(text)


class Outbox:
    """The ``outbox`` table of a SQLite file (WAL; safe beside the event store's connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = _path(path)
        self._lock = threading.Lock()
        try:
            self._db = connect(self.path, _DDL)
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
        sql = (f"SELECT {_COLUMNS} FROM outbox WHERE seq IN"  # noqa: S608
               " (SELECT MIN(seq) FROM outbox WHERE status = 'pending' GROUP BY channel)"
               " AND next_attempt_us <= ? ORDER BY seq LIMIT ?")
        return [OutboxItem._from_row(r) for r in self._query(sql, (_us(now), limit))]

    def next_due_at(self) -> datetime | None:
        """When the earliest channel head becomes due (None when nothing is pending)."""
        rows = self._query("SELECT MIN(next_attempt_us) FROM outbox WHERE seq IN (SELECT MIN(seq)"
                           " FROM outbox WHERE status = 'pending' GROUP BY channel)", ())
        return _time(rows[0][0]) if rows else None

    def mark_sent(self, id: str, at: datetime) -> None:
        """The receiver acknowledged it: never send it again."""
        self._update("UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_us = ?,"
                     " last_error = NULL WHERE id = ?", (_us(at), id))

    def mark_failed(self, id: str, error: str, next_attempt_at: datetime, dead: bool) -> None:
        """An attempt failed: try again at ``next_attempt_at``, or give up (``dead``)."""
        self._update("UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?,"
                     " next_attempt_us = ? WHERE id = ?",
                     (DEAD if dead else PENDING, error[:500], _us(next_attempt_at), id))

    def depth(self) -> dict[str, int]:
        """Pending notifications per channel."""
        rows = self._query("SELECT channel, COUNT(*) FROM outbox WHERE status = 'pending'"
                           " GROUP BY channel ORDER BY channel", ())
        return {channel: n for channel, n in rows}

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

    def _update(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            with self._lock, self._transaction():
                if self._db.execute(sql, args).rowcount != 1:
                    raise AlertStateError(f"no notification {args[-1]!r} in the outbox")
        except sqlite3.Error as exc:
            raise AlertStateError(f"updating the outbox failed: {exc}") from exc
