"""The alert state in a SQLite file (WAL mode), normally the event store's own file (the
``AlertState`` of storage/alert_state.py). Every write is one ``BEGIN IMMEDIATE`` transaction,
so several processes (the consumer, ``alerts run``, the CLI, the web) can share the file."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from schemas.alerts import Acknowledgement, Alert, AlertChange, Change, Review, Silence, Status
from storage.alert_state import (
    SCHEMA,
    alert_from_json,
    evaluation_lease,
    history_rows,
    lease_check,
    silence_from_json,
    silence_to_json,
)
from storage.errors import AlertStateError
from storage.migrations import migrate_sqlite
from storage.sqlite import connect
from storage.times import stored_time, stored_us, wall_us

_T = TypeVar("_T")
_US_DELTA = timedelta(microseconds=1)


class SQLiteAlertState:
    """The alert state in a SQLite file (WAL mode), normally the event store's own file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = connect(self.path)
            # Several processes may open a new file at once: one write transaction migrates.
            migrate_sqlite(self._db, str(self.path), SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise AlertStateError(f"cannot open the alert state at {self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise AlertStateError(f"{doing} in {self.path} failed: {exc}") from exc

    def _write(self, doing: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._transaction(doing) as db:
            return work(db)

    def _read(self, doing: str, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise AlertStateError(f"{doing} in {self.path} failed: {exc}") from exc

    # -- alerts and their history ------------------------------------------------------------
    def alerts(self) -> dict[str, Alert]:
        rows = self._read("reading the alerts", "SELECT key, body FROM alert_states ORDER BY key")
        return {key: alert_from_json(json.loads(body)) for key, body in rows}

    def save(self, evaluation_alerts: Iterable[Alert]) -> None:
        alerts = list(evaluation_alerts)
        rows = [(a.key, a.process, a.status.value, json.dumps(a.to_json())) for a in alerts]

        def work(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO alert_states (key, process, status, body) VALUES (?,?,?,?)"
                           " ON CONFLICT (key) DO UPDATE SET process = excluded.process,"
                           " status = excluded.status, body = excluded.body", rows)
            db.execute("DELETE FROM alert_states WHERE status = ? AND key NOT IN"
                       " (SELECT value FROM json_each(?))",
                       (Status.PENDING.value, json.dumps([a.key for a in alerts])))
        self._write(f"saving {len(rows)} alerts", work)

    def record_changes(self, changes: Sequence[AlertChange]) -> None:
        rows = history_rows(changes)
        self._write(f"recording {len(rows)} alert changes", lambda db: db.executemany(
            "INSERT INTO alert_history (key, change, status, at_us, summary, body)"
            " VALUES (?,?,?,?,?,?)", rows))

    def history(self, key: str | None = None, limit: int = 100) -> list[AlertChange]:
        sql = "SELECT change, at_us, body FROM alert_history"
        args: list[Any] = []
        if key is not None:
            sql += " WHERE key = ?"
            args.append(key)
        rows = self._read("reading the alert history", sql + " ORDER BY seq DESC LIMIT ?",
                          [*args, limit])
        return [AlertChange(Change(change), alert_from_json(json.loads(body)), stored_time(at_us))
                for change, at_us, body in rows]

    def fired(self) -> dict[tuple[str, str], int]:
        rows = self._read("counting the alerts fired",
                          "SELECT json_extract(body, '$.process'), json_extract(body, '$.rule'),"
                          " COUNT(*) FROM alert_history WHERE change = 'firing' GROUP BY 1, 2")
        return {(str(process), str(rule)): int(n) for process, rule, n in rows}

    # -- evaluation leases and the fenced commit -----------------------------------------------
    def take_leases(self, names: Sequence[str], holder: str, lease: timedelta) -> list[str]:
        wall = wall_us()
        until = wall + lease // _US_DELTA

        def work(db: sqlite3.Connection) -> list[str]:
            return [name for name in names if db.execute(
                "INSERT INTO alert_leases (name, holder, until_us) VALUES (?,?,?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " until_us = excluded.until_us WHERE alert_leases.holder = excluded.holder"
                " OR alert_leases.until_us <= ?", (name, holder, until, wall)).rowcount == 1]
        return self._write(f"taking {len(names)} leases", work)

    def release_leases(self, names: Sequence[str], holder: str) -> None:
        self._write("releasing leases", lambda db: db.execute(
            "DELETE FROM alert_leases WHERE holder = ? AND name IN"
            " (SELECT value FROM json_each(?))", (holder, json.dumps(list(names)))))

    def commit(self, evaluation_alerts: Iterable[Alert], changes: Sequence[AlertChange],
               processes: Collection[str], holder: str) -> None:
        scope = sorted(set(processes))
        alerts = [a for a in evaluation_alerts if a.process in scope]
        rows = [(a.key, a.process, a.status.value, json.dumps(a.to_json())) for a in alerts]
        history = history_rows(changes)

        def work(db: sqlite3.Connection) -> None:
            (held,) = db.execute(
                "SELECT COUNT(*) FROM alert_leases WHERE holder = ? AND until_us > ? AND name IN"
                " (SELECT value FROM json_each(?))",
                (holder, wall_us(), json.dumps([evaluation_lease(p) for p in scope]))).fetchone()
            lease_check(held, len(scope), holder)
            db.executemany("INSERT INTO alert_states (key, process, status, body) VALUES (?,?,?,?)"
                           " ON CONFLICT (key) DO UPDATE SET process = excluded.process,"
                           " status = excluded.status, body = excluded.body", rows)
            db.execute("DELETE FROM alert_states WHERE status = ?"
                       " AND process IN (SELECT value FROM json_each(?))"
                       " AND key NOT IN (SELECT value FROM json_each(?))",
                       (Status.PENDING.value, json.dumps(scope),
                        json.dumps([a.key for a in alerts])))
            db.executemany("INSERT INTO alert_history (key, change, status, at_us, summary, body)"
                           " VALUES (?,?,?,?,?,?)", history)
        self._write(f"storing the evaluation of {len(scope)} processes", work)

    # -- silences ----------------------------------------------------------------------------
    def add_silence(self, silence: Silence) -> Silence:
        if not silence.id:
            silence = replace(silence, id=uuid.uuid4().hex[:12])
        if silence.until <= silence.created_at:
            raise AlertStateError(f"silence {silence.id!r} ends before it starts")
        if (silence.key, silence.rule, silence.process, silence.severity) == (None,) * 4:
            raise AlertStateError(f"silence {silence.id!r} has no matcher: give a key, rule,"
                                  " process or severity")
        row = (silence.id, stored_us(silence.created_at), stored_us(silence.until),
               json.dumps(silence_to_json(silence)))

        def work(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM alert_silences WHERE id = ?", (silence.id,)).fetchone():
                raise AlertStateError(f"a silence with id {silence.id!r} already exists")
            db.execute("INSERT INTO alert_silences (id, created_us, until_us, body)"
                       " VALUES (?,?,?,?)", row)
        self._write(f"adding silence {silence.id!r}", work)
        return silence

    def silences(self, active_at: datetime | None = None) -> list[Silence]:
        sql, args = "SELECT body FROM alert_silences", []
        if active_at is not None:
            sql += " WHERE created_us <= ? AND ? < until_us"
            args = [stored_us(active_at)] * 2
        rows = self._read("reading the silences", sql + " ORDER BY created_us, id", args)
        return [silence_from_json(json.loads(body)) for (body,) in rows]

    def expire_silence(self, id: str, by: str, now: datetime) -> Silence:
        def work(db: sqlite3.Connection) -> Silence:
            row = db.execute("SELECT body FROM alert_silences WHERE id = ?", (id,)).fetchone()
            if row is None:
                raise AlertStateError(f"no silence with id {id!r}")
            silence = silence_from_json(json.loads(row[0]))
            if silence.until <= now:
                return silence  # already over: nothing to do
            silence = replace(silence, until=now)
            db.execute("UPDATE alert_silences SET until_us = ?, body = ?, expired_by = ?,"
                       " expired_us = ? WHERE id = ?",
                       (stored_us(now), json.dumps(silence_to_json(silence)), by, stored_us(now), id))
            return silence
        return self._write(f"expiring silence {id!r}", work)

    # -- acknowledgements and reviews --------------------------------------------------------
    def acknowledge(self, ack: Acknowledgement) -> None:
        def work(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT status FROM alert_states WHERE key = ?", (ack.key,)).fetchone()
            if row is None:
                raise AlertStateError(f"no alert with key {ack.key!r}")
            if row[0] == Status.RESOLVED.value:
                raise AlertStateError(f"alert {ack.key!r} is resolved: nothing to acknowledge")
            db.execute("INSERT INTO alert_acks (key, who, at_us, note) VALUES (?,?,?,?)",
                       (ack.key, ack.by, stored_us(ack.at), ack.note))
        self._write(f"acknowledging {ack.key!r}", work)

    def acknowledgements(self) -> dict[str, Acknowledgement]:
        rows = self._read("reading the acknowledgements",
                          "SELECT key, who, at_us, note FROM alert_acks ORDER BY at_us, seq")
        return {key: Acknowledgement(key, who, stored_time(at_us), note) for key, who, at_us, note in rows}

    def record_review(self, review: Review) -> None:
        row = (review.process, review.by, stored_us(review.at), review.note)
        self._write(f"recording a review of {review.process!r}", lambda db: db.execute(
            "INSERT INTO process_reviews (process, who, at_us, note) VALUES (?,?,?,?)", row))

    def reviews(self, process: str | None = None) -> list[Review]:
        sql, args = "SELECT process, who, at_us, note FROM process_reviews", []
        if process is not None:
            sql, args = sql + " WHERE process = ?", [process]
        rows = self._read("reading the reviews", sql + " ORDER BY at_us DESC, seq DESC", args)
        return [Review(p, who, stored_time(at_us), note) for p, who, at_us, note in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
