"""The outbox: notifications persisted before they are sent, beside the events.

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
lease cannot overwrite the outcome of the worker that took the row over (``LeaseLost``). This
module holds its interface and its tables on SQLite and PostgreSQL; storage/outbox_tables.py
implements it once for both, and ``storage.open_outbox(url)`` opens the one beside the store a
URL names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from schemas.alerts import Notification
from storage.errors import AlertStateError, LeaseLost
from storage.migrations import Migration, Schema
from storage.times import stored_time, stored_time_opt

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
"""The outbox's tables in a SQLite file, versioned (storage/migrations.py runs the steps)."""
POSTGRES_SCHEMA = Schema(COMPONENT, "the outbox", "outbox", (
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
), AlertStateError)
"""The same table in PostgreSQL (BIGINT times, BYTEA payloads, an identity seq)."""
COLUMNS = ("seq, id, channel, process, keys, payload, status, attempts, created_us,"
            " enqueued_us, next_attempt_us, sent_us, last_error, claim_token")


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
                   attempts=attempts, created_at=stored_time(created), enqueued_at=stored_time(enqueued),
                   next_attempt_at=stored_time(nxt), sent_at=stored_time_opt(sent), last_error=err,
                   claim_token=token)


class OutboxQueue(Protocol):
    """What delivery and the evaluator need of an outbox; storage/outbox_tables.py implements
    it once for SQLite and PostgreSQL, and says what each method does."""

    def enqueue(self, notifications: Iterable[Notification],
                payload_for: Callable[[Notification], bytes],
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


HEADS = "SELECT MIN(seq) FROM outbox WHERE status = 'pending' GROUP BY channel"


def claim_token() -> str:
    """A fresh claim token (one per ``claim`` call)."""
    return uuid.uuid4().hex


def not_updated(id: str, token: str | None) -> AlertStateError:
    """Why marking a notification changed nothing: it is not there, or (with a token) the claim
    it was read under no longer stands."""
    if token is None:
        return AlertStateError(f"no notification {id!r} in the outbox")
    return LeaseLost(f"notification {id!r}: its claim was taken over by another worker (or it"
                     " is no longer pending), so this worker's outcome is not recorded")
