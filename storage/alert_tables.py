"""The alert state (storage/alert_state.py's ``AlertState``) in the store's database, each query
written once for SQLite and PostgreSQL (storage/tables.py).

Every write is one transaction. The checks a write makes (the alert to acknowledge exists and
is not resolved, the leases are still held) read their rows locked where the dialect locks
rows (PostgreSQL); SQLite's write transaction holds the whole file, so no writer can slip
between the check and the write on either.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from schemas import strict_json
from schemas.alerts import (
    Acceptance,
    Acknowledgement,
    Alert,
    AlertChange,
    AlertNote,
    Change,
    Review,
    Silence,
    Status,
)
from storage.alert_state import (
    POSTGRES_SCHEMA,
    SCHEMA,
    alert_from_json,
    evaluation_lease,
    history_rows,
    lease_check,
    note_from_json,
    silence_from_json,
    silence_to_json,
)
from storage.errors import AlertStateError
from storage.pg_session import PostgresSession
from storage.tables import Run, SQLiteTables, Tables
from storage.times import stored_time, stored_us, wall_us

_US = timedelta(microseconds=1)
_UPSERT = ("INSERT INTO alert_states (key, process, status, body) VALUES (?,?,?,?)"
           " ON CONFLICT (key) DO UPDATE SET process = excluded.process,"
           " status = excluded.status, body = excluded.body")
_HISTORY = ("INSERT INTO alert_history (key, change, status, at_us, summary, body)"
            " VALUES (?,?,?,?,?,?)")


def _change_of(change: str, at_us: int, body: str) -> AlertChange:
    """A change as recorded in ``alert_history``: its kind, time, and the alert as it was then
    (with the note or sentence it carried)."""
    data = json.loads(body)
    return AlertChange(Change(change), alert_from_json(data), stored_time(at_us),
                       note=note_from_json(data.get("note")), detail=str(data.get("detail", "")))


class StoredAlertState:
    """The alert state in a component's ``Tables`` (SQLite file or PostgreSQL database)."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self._sql = tables.dialect

    # -- alerts and their history ------------------------------------------------------------
    def alerts(self) -> dict[str, Alert]:
        rows = self.tables.read("reading the alerts",
                                "SELECT key, body FROM alert_states ORDER BY key")
        return {key: alert_from_json(json.loads(body)) for key, body in rows}

    def save(self, evaluation_alerts: Iterable[Alert]) -> None:
        alerts = list(evaluation_alerts)
        rows = [(a.key, a.process, a.status.value, strict_json.dumps(a.to_json())) for a in alerts]

        def work(run: Run) -> None:
            run.many(_UPSERT, rows)
            run.count(f"DELETE FROM alert_states WHERE status = ? AND NOT {self._sql.in_list('key')}",  # noqa: S608 (dialect fragments)
                      (Status.PENDING.value, self._sql.listed([a.key for a in alerts])))
        self.tables.write(f"saving {len(rows)} alerts", work)

    def record_changes(self, changes: Sequence[AlertChange]) -> None:
        rows = history_rows(changes)
        self.tables.write(f"recording {len(rows)} alert changes",
                          lambda run: run.many(_HISTORY, rows))

    def history(self, key: str | None = None, limit: int = 100) -> list[AlertChange]:
        sql, args = "SELECT change, at_us, body FROM alert_history", []
        if key is not None:
            sql, args = sql + " WHERE key = ?", [key]
        rows = self.tables.read("reading the alert history", sql + " ORDER BY seq DESC LIMIT ?",
                                [*args, limit])
        return [_change_of(*row) for row in rows]

    def changes(self, since: datetime | None = None,
                until: datetime | None = None) -> list[AlertChange]:
        sql, args = "SELECT change, at_us, body FROM alert_history WHERE 1 = 1", list[int]()
        if since is not None:
            sql, args = sql + " AND at_us >= ?", [*args, stored_us(since)]
        if until is not None:
            sql, args = sql + " AND at_us < ?", [*args, stored_us(until)]
        rows = self.tables.read("reading the alert changes", sql + " ORDER BY at_us, seq", args)
        return [_change_of(*row) for row in rows]

    def last_change(self) -> int:
        rows = self.tables.read("reading the latest alert change",
                                "SELECT MAX(seq) FROM alert_history")
        return int(rows[0][0] or 0) if rows else 0

    def fired(self) -> dict[tuple[str, str], int]:
        process, rule = self._sql.json_text("body", "process"), self._sql.json_text("body", "rule")
        rows = self.tables.read("counting the alerts fired",
                                f"SELECT {process}, {rule}, COUNT(*) FROM alert_history"  # noqa: S608
                                " WHERE change IN ('firing', 'recurred') GROUP BY 1, 2")
        return {(str(p), str(r)): int(n) for p, r, n in rows}

    # -- evaluation leases and the fenced commit -----------------------------------------------
    def take_leases(self, names: Sequence[str], holder: str, lease: timedelta) -> list[str]:
        """An upsert per name, which (on PostgreSQL) locks the row and re-checks holder and
        expiry on its latest version, so two workers never both win."""
        wall = wall_us()
        until = wall + lease // _US

        def work(run: Run) -> list[str]:
            return [name for name in names if run.count(
                "INSERT INTO alert_leases (name, holder, until_us) VALUES (?,?,?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " until_us = excluded.until_us WHERE alert_leases.holder = excluded.holder"
                " OR alert_leases.until_us <= ?", (name, holder, until, wall)) == 1]
        return self.tables.write(f"taking {len(names)} leases", work)

    def release_leases(self, names: Sequence[str], holder: str) -> None:
        self.tables.write("releasing leases", lambda run: run.count(
            f"DELETE FROM alert_leases WHERE holder = ? AND {self._sql.in_list('name')}",  # noqa: S608 (dialect fragments)
            (holder, self._sql.listed(names))))

    def commit(self, evaluation_alerts: Iterable[Alert], changes: Sequence[AlertChange],
               processes: Collection[str], holder: str) -> None:
        """The lease rows stay locked until the commit, so no worker takes one over half way."""
        scope = sorted(set(processes))
        alerts = [a for a in evaluation_alerts if a.process in scope]
        rows = [(a.key, a.process, a.status.value, strict_json.dumps(a.to_json())) for a in alerts]
        history = history_rows(changes)
        sql = self._sql

        def work(run: Run) -> None:
            held = run.rows(
                f"SELECT name FROM alert_leases WHERE holder = ? AND until_us > ?"  # noqa: S608
                f" AND {sql.in_list('name')}{sql.for_update}",
                (holder, wall_us(), sql.listed([evaluation_lease(p) for p in scope])))
            lease_check(len(held), len(scope), holder)
            run.many(_UPSERT, rows)
            run.many(_HISTORY, history)
            run.count(f"DELETE FROM alert_states WHERE status = ? AND {sql.in_list('process')}"  # noqa: S608 (dialect fragments)
                      f" AND NOT {sql.in_list('key')}",
                      (Status.PENDING.value, sql.listed(scope), sql.listed([a.key for a in alerts])))
        self.tables.write(f"storing the evaluation of {len(scope)} processes", work)

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
               strict_json.dumps(silence_to_json(silence)))

        def work(run: Run) -> None:
            if run.count("INSERT INTO alert_silences (id, created_us, until_us, body)"
                         " VALUES (?,?,?,?) ON CONFLICT (id) DO NOTHING", row) != 1:
                raise AlertStateError(f"a silence with id {silence.id!r} already exists")
        self.tables.write(f"adding silence {silence.id!r}", work)
        return silence

    def silences(self, active_at: datetime | None = None) -> list[Silence]:
        sql, args = "SELECT body FROM alert_silences", []
        if active_at is not None:
            sql += " WHERE created_us <= ? AND ? < until_us"
            args = [stored_us(active_at)] * 2
        rows = self.tables.read("reading the silences", sql + " ORDER BY created_us, id", args)
        return [silence_from_json(json.loads(body)) for (body,) in rows]

    def expire_silence(self, id: str, by: str, now: datetime) -> Silence:
        def work(run: Run) -> Silence:
            found = run.rows(f"SELECT body FROM alert_silences WHERE id = ?{self._sql.for_update}",  # noqa: S608 (dialect fragments)
                             (id,))
            if not found:
                raise AlertStateError(f"no silence with id {id!r}")
            silence = silence_from_json(json.loads(found[0][0]))
            if silence.until <= now:
                return silence  # already over: nothing to do
            silence = replace(silence, until=now)
            run.count("UPDATE alert_silences SET until_us = ?, body = ?, expired_by = ?,"
                      " expired_us = ? WHERE id = ?",
                      (stored_us(now), strict_json.dumps(silence_to_json(silence)), by, stored_us(now), id))
            return silence
        return self.tables.write(f"expiring silence {id!r}", work)

    # -- acknowledgements and reviews --------------------------------------------------------
    def _check_open(self, run: Run, key: str, what: str) -> None:
        """AlertStateError unless the alert exists and is open (read under a share lock)."""
        found = run.rows(f"SELECT status FROM alert_states WHERE key = ?{self._sql.for_share}",  # noqa: S608 (dialect fragments)
                         (key,))
        if not found:
            raise AlertStateError(f"no alert with key {key!r}")
        if found[0][0] in (Status.RESOLVED.value, Status.CONFIRMED.value):
            raise AlertStateError(f"alert {key!r} is {found[0][0]}: nothing to {what}")

    def acknowledge(self, ack: Acknowledgement) -> None:
        def work(run: Run) -> None:
            self._check_open(run, ack.key, "acknowledge")
            run.count("INSERT INTO alert_acks (key, who, at_us, note, owner, action)"
                      " VALUES (?,?,?,?,?,?)",
                      (ack.key, ack.by, stored_us(ack.at), ack.note, ack.owner, ack.action))
        self.tables.write(f"acknowledging {ack.key!r}", work)

    def acknowledgements(self) -> dict[str, Acknowledgement]:
        rows = self.tables.read("reading the acknowledgements",
                                "SELECT key, who, at_us, note, owner, action FROM alert_acks"
                                " ORDER BY at_us, seq")
        return {key: Acknowledgement(key, who, stored_time(at_us), note, owner, action)
                for key, who, at_us, note, owner, action in rows}

    def add_note(self, note: AlertNote, change: AlertChange | None = None) -> None:
        history = history_rows([change] if change is not None else [])

        def work(run: Run) -> None:
            self._check_open(run, note.key, "note")
            run.count("INSERT INTO alert_notes (key, who, at_us, text) VALUES (?,?,?,?)",
                      (note.key, note.by, stored_us(note.at), note.text))
            run.many(_HISTORY, history)
        self.tables.write(f"adding a note to {note.key!r}", work)

    def notes(self, key: str | None = None) -> list[AlertNote]:
        sql, args = "SELECT key, who, at_us, text FROM alert_notes", []
        if key is not None:
            sql, args = sql + " WHERE key = ?", [key]
        rows = self.tables.read("reading the notes", sql + " ORDER BY at_us, seq", args)
        return [AlertNote(k, who, stored_time(at_us), text) for k, who, at_us, text in rows]

    def accept(self, acceptance: Acceptance) -> None:
        def work(run: Run) -> None:
            found = run.rows(f"SELECT status FROM alert_states WHERE key = ?{self._sql.for_share}",  # noqa: S608 (dialect fragments)
                             (acceptance.key,))
            if not found:
                raise AlertStateError(f"no alert with key {acceptance.key!r}")
            if found[0][0] in (Status.RESOLVED.value, Status.CONFIRMED.value):
                raise AlertStateError(f"alert {acceptance.key!r} is {found[0][0]}: nothing to accept")
            run.count("INSERT INTO alert_acceptances (key, who, at_us, why) VALUES (?,?,?,?)",
                      (acceptance.key, acceptance.by, stored_us(acceptance.at), acceptance.why))
        self.tables.write(f"accepting {acceptance.key!r}", work)

    def acceptances(self) -> dict[str, Acceptance]:
        rows = self.tables.read("reading the acceptances", "SELECT key, who, at_us, why FROM "
                                "alert_acceptances ORDER BY at_us, seq")
        return {key: Acceptance(key, who, stored_time(at_us), why)
                for key, who, at_us, why in rows}

    def record_review(self, review: Review) -> None:
        row = (review.process, review.by, stored_us(review.at), review.note)
        self.tables.write(f"recording a review of {review.process!r}", lambda run: run.count(
            "INSERT INTO process_reviews (process, who, at_us, note) VALUES (?,?,?,?)", row))

    def reviews(self, process: str | None = None) -> list[Review]:
        sql, args = "SELECT process, who, at_us, note FROM process_reviews", []
        if process is not None:
            sql, args = sql + " WHERE process = ?", [process]
        rows = self.tables.read("reading the reviews", sql + " ORDER BY at_us DESC, seq DESC", args)
        return [Review(p, who, stored_time(at_us), note) for p, who, at_us, note in rows]

    def close(self) -> None:
        self.tables.close()


class SQLiteAlertState(StoredAlertState):
    """The alert state in a SQLite file (WAL mode), normally the event store's own file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(SQLiteTables(self.path, SCHEMA))


class PostgresAlertState(StoredAlertState):
    """The alert state in the PostgreSQL store's database (component ``alerts``)."""

    def __init__(self, url: str, session: PostgresSession | None = None) -> None:
        from storage.pg_tables import PostgresTables  # the driver only where it is used

        super().__init__(PostgresTables(url, POSTGRES_SCHEMA, session))
