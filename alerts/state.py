"""The persisted alert state (alerts, silences, acknowledgements, reviews, change history), kept
beside the events in tables of its own (the SQLite file here; the PostgreSQL database in
alerts/pg_state.py), so a restart sends nothing twice and forgets no silence.

Times are stored as integer microseconds since the epoch (UTC) and come back as aware UTC
datetimes; an alert is stored as its ``Alert.to_json`` and read back by ``alert_from_json``,
which round-trips it exactly. Every write is one ``BEGIN IMMEDIATE`` transaction, so several
processes (the consumer, ``alerts run``, the CLI, the web) can share the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

from alerts.errors import AlertStateError, LeaseLost
from ingest.migrations import Migration, Schema, migrate_sqlite
from ingest.pg_session import PostgresSession
from ingest.sqlite import connect
from schemas.alerts import (
    Acknowledgement,
    Alert,
    AlertChange,
    Change,
    Review,
    Severity,
    Silence,
    Status,
)

_T = TypeVar("_T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

SCHEMA = Schema("alerts", "the alert state", "alert_states", (
    Migration(1, "alerts, silences, acknowledgements, reviews and the change history", (
        """CREATE TABLE IF NOT EXISTS alert_states (
            key        TEXT PRIMARY KEY,
            process    TEXT NOT NULL,
            status     TEXT NOT NULL,
            body       TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS alert_states_process ON alert_states (process, status)",
        """CREATE TABLE IF NOT EXISTS alert_silences (
            id         TEXT PRIMARY KEY,
            created_us INTEGER NOT NULL,
            until_us   INTEGER NOT NULL,
            body       TEXT NOT NULL,
            expired_by TEXT,
            expired_us INTEGER)""",
        """CREATE TABLE IF NOT EXISTS alert_acks (
            seq        INTEGER PRIMARY KEY,
            key        TEXT NOT NULL,
            who        TEXT NOT NULL,
            at_us      INTEGER NOT NULL,
            note       TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS alert_acks_key ON alert_acks (key, at_us)",
        """CREATE TABLE IF NOT EXISTS process_reviews (
            seq        INTEGER PRIMARY KEY,
            process    TEXT NOT NULL,
            who        TEXT NOT NULL,
            at_us      INTEGER NOT NULL,
            note       TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS process_reviews_process ON process_reviews (process, at_us)",
        """CREATE TABLE IF NOT EXISTS alert_history (
            seq        INTEGER PRIMARY KEY,
            key        TEXT NOT NULL,
            change     TEXT NOT NULL,
            status     TEXT NOT NULL,
            at_us      INTEGER NOT NULL,
            summary    TEXT NOT NULL,
            body       TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS alert_history_key ON alert_history (key, seq)",
    )),
    Migration(2, "evaluation leases: one worker at a time evaluates a process", (
        """CREATE TABLE IF NOT EXISTS alert_leases (
            name       TEXT PRIMARY KEY,
            holder     TEXT NOT NULL,
            until_us   INTEGER NOT NULL)""",
    )),
), AlertStateError)
"""The alert state's tables in a SQLite file, versioned as the PostgreSQL ones are."""


class AlertState(Protocol):
    """What the evaluator, the CLI and the web read and record about alerts."""

    def alerts(self) -> dict[str, Alert]:
        """Every stored alert by key (resolved ones kept for history)."""
        ...

    def save(self, evaluation_alerts: Iterable[Alert]) -> None:
        """Store an evaluation's alerts in one transaction: upsert each; a stored PENDING alert
        that is not among them is removed (``advance`` drops pending alerts that cleared)."""
        ...

    def record_changes(self, changes: Sequence[AlertChange]) -> None:
        """Append changes to the history."""
        ...

    def history(self, key: str | None = None, limit: int = 100) -> list[AlertChange]:
        """Recorded changes, newest first, of one alert or all."""
        ...

    def fired(self) -> dict[tuple[str, str], int]:
        """How often alerts started firing (FIRING changes in the history), per (process, rule)."""
        ...

    def add_silence(self, silence: Silence) -> Silence:
        """Record a silence (an empty id gets a fresh one); returns it as stored."""
        ...

    def silences(self, active_at: datetime | None = None) -> list[Silence]:
        """Every silence, or those active at a moment, oldest first."""
        ...

    def expire_silence(self, id: str, by: str, now: datetime) -> Silence:
        """End a silence now (``until`` becomes ``now``); returns it as it now is."""
        ...

    def acknowledge(self, ack: Acknowledgement) -> None:
        """Record an acknowledgement of a pending or firing alert."""
        ...

    def acknowledgements(self) -> dict[str, Acknowledgement]:
        """The latest acknowledgement per alert key."""
        ...

    def record_review(self, review: Review) -> None:
        """Record that a process definition was reviewed."""
        ...

    def reviews(self, process: str | None = None) -> list[Review]:
        """Recorded reviews, newest first, of one process or all."""
        ...

    def take_leases(self, names: Sequence[str], holder: str, lease: timedelta) -> list[str]:
        """Hold each named lease for ``lease`` of wall time where it is free, expired or
        ``holder``'s already (renewed), in one transaction; the names ``holder`` now holds."""
        ...

    def release_leases(self, names: Sequence[str], holder: str) -> None:
        """Give up those of the named leases ``holder`` holds."""
        ...

    def commit(self, evaluation_alerts: Iterable[Alert], changes: Sequence[AlertChange],
               processes: Collection[str], holder: str) -> None:
        """Store one evaluation of ``processes`` in one transaction, if ``holder`` still holds
        every one's lease (``evaluation_lease``), else raise ``LeaseLost`` and store nothing:
        upsert those processes' alerts, drop their pending ones not among them (as ``save``),
        append the changes to the history."""
        ...

    def close(self) -> None: ...


def evaluation_lease(process: str) -> str:
    """The name of the lease an evaluation of ``process`` holds while it runs."""
    return f"evaluate:{process}"


def wall_us() -> int:
    """The wall clock in microseconds: leases expire on it, whatever clock evaluation runs on."""
    return time.time_ns() // 1000


def _lease_check(held: int, wanted: int, holder: str) -> None:
    if held != wanted:
        raise LeaseLost(f"worker {holder} no longer holds the evaluation lease of"
                        f" {wanted - held} of its {wanted} processes: another worker took over")


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
        rows = _history_rows(changes)
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
        return [AlertChange(Change(change), alert_from_json(json.loads(body)), _time(at_us))
                for change, at_us, body in rows]

    def fired(self) -> dict[tuple[str, str], int]:
        rows = self._read("counting the alerts fired",
                          "SELECT json_extract(body, '$.process'), json_extract(body, '$.rule'),"
                          " COUNT(*) FROM alert_history WHERE change = 'firing' GROUP BY 1, 2")
        return {(str(process), str(rule)): int(n) for process, rule, n in rows}

    # -- evaluation leases and the fenced commit -----------------------------------------------
    def take_leases(self, names: Sequence[str], holder: str, lease: timedelta) -> list[str]:
        wall = wall_us()
        until = wall + lease // _US

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
        history = _history_rows(changes)

        def work(db: sqlite3.Connection) -> None:
            (held,) = db.execute(
                "SELECT COUNT(*) FROM alert_leases WHERE holder = ? AND until_us > ? AND name IN"
                " (SELECT value FROM json_each(?))",
                (holder, wall_us(), json.dumps([evaluation_lease(p) for p in scope]))).fetchone()
            _lease_check(held, len(scope), holder)
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
        row = (silence.id, _us(silence.created_at), _us(silence.until),
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
            args = [_us(active_at)] * 2
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
                       (_us(now), json.dumps(silence_to_json(silence)), by, _us(now), id))
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
                       (ack.key, ack.by, _us(ack.at), ack.note))
        self._write(f"acknowledging {ack.key!r}", work)

    def acknowledgements(self) -> dict[str, Acknowledgement]:
        rows = self._read("reading the acknowledgements",
                          "SELECT key, who, at_us, note FROM alert_acks ORDER BY at_us, seq")
        return {key: Acknowledgement(key, who, _time(at_us), note) for key, who, at_us, note in rows}

    def record_review(self, review: Review) -> None:
        row = (review.process, review.by, _us(review.at), review.note)
        self._write(f"recording a review of {review.process!r}", lambda db: db.execute(
            "INSERT INTO process_reviews (process, who, at_us, note) VALUES (?,?,?,?)", row))

    def reviews(self, process: str | None = None) -> list[Review]:
        sql, args = "SELECT process, who, at_us, note FROM process_reviews", []
        if process is not None:
            sql, args = sql + " WHERE process = ?", [process]
        rows = self._read("reading the reviews", sql + " ORDER BY at_us DESC, seq DESC", args)
        return [Review(p, who, _time(at_us), note) for p, who, at_us, note in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_alert_state(store_url: str, session: PostgresSession | None = None) -> AlertState:
    """Open the alert state beside the event store a URL names (``sqlite:///file.db``, or
    ``postgresql://...``: the tables in the store's database, alerts/pg_state.py, its
    connection with ``session``'s limits, by default the defaults)."""
    scheme = urlparse(store_url).scheme
    if scheme == "sqlite":
        path = store_url[len("sqlite:///"):] if store_url.startswith("sqlite:///") else ""
        if not path:
            raise AlertStateError("the store url names no file: use sqlite:///path/to/file.db")
        return SQLiteAlertState(path)
    if scheme in ("postgresql", "postgres"):
        from alerts.pg_state import PostgresAlertState  # psycopg only where it is used

        return PostgresAlertState(store_url, session)
    # The URL is not echoed: a database URL may carry a password.
    raise AlertStateError(f"store url: unknown scheme {scheme!r} (use sqlite:///... or "
                          "postgresql://...)")


# -- JSON codecs -----------------------------------------------------------------------------
def alert_from_json(data: Mapping[str, Any]) -> Alert:
    """The inverse of ``Alert.to_json``: enums, dates and aware UTC datetimes come back."""
    try:
        told = data.get("notified_severity")
        return Alert(
            key=data["key"], rule=data["rule"], process=data["process"],
            subject=data["subject"], severity=Severity(data["severity"]),
            status=Status(data["status"]), summary=data["summary"],
            evidence=dict(data["evidence"]), segment=dict(data["segment"]),
            since=date.fromisoformat(data["since"]) if data["since"] else None,
            cases=tuple(data["cases"]), owner=data["owner"],
            first_seen=_parse(data["first_seen"]), last_seen=_parse(data["last_seen"]),
            fired_at=_parse_opt(data["fired_at"]), resolved_at=_parse_opt(data["resolved_at"]),
            acknowledged_by=data["acknowledged_by"],
            acknowledged_at=_parse_opt(data["acknowledged_at"]),
            silenced_by=data["silenced_by"], escalated_at=_parse_opt(data["escalated_at"]),
            url=data["url"], notified_at=_parse_opt(data.get("notified_at")),
            notified_severity=Severity(told) if told else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertStateError(f"a stored alert cannot be read: {exc!r}") from exc


def silence_to_json(silence: Silence) -> dict[str, Any]:
    """A silence as JSON (times as ISO 8601 with their offset)."""
    return {"id": silence.id, "until": silence.until.isoformat(), "by": silence.by,
            "why": silence.why, "created_at": silence.created_at.isoformat(),
            "key": silence.key, "rule": silence.rule, "process": silence.process,
            "severity": silence.severity.value if silence.severity else None}


def silence_from_json(data: Mapping[str, Any]) -> Silence:
    """The inverse of ``silence_to_json``."""
    try:
        return Silence(id=data["id"], until=_parse(data["until"]), by=data["by"], why=data["why"],
                       created_at=_parse(data["created_at"]), key=data["key"], rule=data["rule"],
                       process=data["process"],
                       severity=Severity(data["severity"]) if data["severity"] else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise AlertStateError(f"a stored silence cannot be read: {exc!r}") from exc


def _history_rows(changes: Sequence[AlertChange]) -> list[tuple[Any, ...]]:
    """The ``alert_history`` rows of some changes (key, change, status, at_us, summary, body)."""
    return [(c.alert.key, c.change.value, c.alert.status.value, _us(c.at), c.alert.summary,
             json.dumps(c.alert.to_json())) for c in changes]


def _us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise AlertStateError(f"time {moment.isoformat()} has no timezone")
    return (moment - _EPOCH) // _US


def _time(us: int) -> datetime:
    return _EPOCH + us * _US


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return moment.astimezone(UTC)


def _parse_opt(text: str | None) -> datetime | None:
    return None if text is None else _parse(text)
