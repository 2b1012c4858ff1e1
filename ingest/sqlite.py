"""Opening the SQLite file that the event store, the alert state and the outbox share.

One way to open it, so every table set gets the same guarantees: WAL mode (readers never block
the writer), a 30 s busy timeout, and its schema created in one write transaction (several
processes may open a new file at once; none sees it without its tables). Everything in one
process goes through Python's own SQLite library: a second SQLite copy in the same process
(connectorx, ADBC) must never open the file, as its POSIX locks and WAL checkpoints would
corrupt it under our connections.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path, ddl: str = "") -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), with ``ddl`` applied.
    Raises ``sqlite3.Error`` or ``OSError``: callers turn them into their own errors."""
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if ddl:
        with transaction(db):
            for statement in filter(str.strip, ddl.split(";")):
                db.execute(statement)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
