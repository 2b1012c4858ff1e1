"""Opening the SQLite file that the event store, the alert state and the outbox share.

One way to open it, so every table set gets the same guarantees: WAL mode (readers never block
the writer), ``synchronous=FULL`` (each commit is fsynced to the WAL before it returns: an
event whose Kafka offset is committed after the store's commit is on disk, power loss
included), a 30 s busy timeout, and its schema created in one write transaction (several
processes may open a new file at once; none sees it without its tables). Everything in one
process goes through Python's own SQLite library: a second SQLite copy in the same process
(connectorx, ADBC) must never open the file, as its POSIX locks and WAL checkpoints would
corrupt it under our connections.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")
"""The ``synchronous`` levels a connection may ask for; FULL is the default (durability)."""


def connect(path: Path, ddl: str = "", synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), with ``ddl`` applied.
    ``synchronous`` NORMAL is faster in WAL mode but a commit may be lost on power failure
    (the benchmark compares them). Raises ``sqlite3.Error`` or ``OSError``: callers turn
    them into their own errors."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous={synchronous!r}: use one of {', '.join(SYNCHRONOUS)}")
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                         check_same_thread=False)
    _enter_wal(db)
    db.execute(f"PRAGMA synchronous={synchronous}")
    if ddl:
        with transaction(db):
            for statement in filter(str.strip, ddl.split(";")):
                db.execute(statement)
    return db


BUSY_TIMEOUT_S = 30.0


def _enter_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL mode. The switch needs the file to itself for a moment and SQLite
    answers "database is locked" at once, without its busy handler, while another connection
    opening the same new file holds it; so retry, with the busy timeout as the deadline."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


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
