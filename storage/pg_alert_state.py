"""The alert state in the PostgreSQL store's database: the same tables and behaviour as
``SQLiteAlertState`` (storage/sqlite_alert_state.py) for several processes on several hosts.

Times are BIGINT microseconds since the epoch (UTC), exactly as the SQLite tables keep them,
so round trips are exact; bodies are the same JSON text (``Alert.to_json``). Every write is one
transaction; the checks a write makes (a silence id is free, the alert to acknowledge exists
and is not resolved) lock the rows they read, so concurrent writers cannot slip between.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

from schemas.alerts import Acknowledgement, Alert, AlertChange, Change, Review, Silence, Status
from storage.alert_state import (
    alert_from_json,
    evaluation_lease,
    history_rows,
    lease_check,
    silence_from_json,
    silence_to_json,
)
from storage.errors import AlertStateError
from storage.migrations import Migration, Schema
from storage.pg_tables import PgTables
from storage.times import stored_time, stored_us, wall_us

STEPS = (
    Migration(1, "alerts, silences, acknowledgements, reviews and the change history", (
        """CREATE TABLE IF NOT EXISTS alert_states (
            key        TEXT PRIMARY KEY,
            process    TEXT NOT NULL,
            status     TEXT NOT NULL,
            body       TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS alert_states_process ON alert_states (process, status)",
        """CREATE TABLE IF NOT EXISTS alert_silences (
            id         TEXT PRIMARY KEY,
            created_us BIGINT NOT NULL,
            until_us   BIGINT NOT NULL,
            body       TEXT NOT NULL,
            expired_by TEXT,
            expired_us BIGINT)""",
        """CREATE TABLE IF NOT EXISTS alert_acks (
            seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key        TEXT NOT NULL,
            who        TEXT NOT NULL,
            at_us      BIGINT NOT NULL,
            note       TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS alert_acks_key ON alert_acks (key, at_us)",
        """CREATE TABLE IF NOT EXISTS process_reviews (
            seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            process    TEXT NOT NULL,
            who        TEXT NOT NULL,
            at_us      BIGINT NOT NULL,
            note       TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS process_reviews_process ON process_reviews (process, at_us)",
        """CREATE TABLE IF NOT EXISTS alert_history (
            seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key        TEXT NOT NULL,
            change     TEXT NOT NULL,
            status     TEXT NOT NULL,
            at_us      BIGINT NOT NULL,
            summary    TEXT NOT NULL,
            body       TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS alert_history_key ON alert_history (key, seq)",
    )),
    Migration(2, "evaluation leases: one worker at a time evaluates a process", (
        """CREATE TABLE IF NOT EXISTS alert_leases (
            name       TEXT PRIMARY KEY,
            holder     TEXT NOT NULL,
            until_us   BIGINT NOT NULL)""",
    )),
)

Conn = psycopg.Connection[Any]
_US = timedelta(microseconds=1)


class PostgresAlertState(PgTables):
    """The alert state in the PostgreSQL store's database (component ``alerts``)."""

    schema = Schema("alerts", "the alert state", "alert_states", STEPS, AlertStateError)

    # -- alerts and their history ------------------------------------------------------------
    def alerts(self) -> dict[str, Alert]:
        rows = self._read("reading the alerts", "SELECT key, body FROM alert_states ORDER BY key")
        return {key: alert_from_json(json.loads(body)) for key, body in rows}

    def save(self, evaluation_alerts: Iterable[Alert]) -> None:
        alerts = list(evaluation_alerts)
        rows = [(a.key, a.process, a.status.value, json.dumps(a.to_json())) for a in alerts]

        def work(conn: Conn) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO alert_states (key, process, status, body) VALUES (%s,%s,%s,%s)"
                    " ON CONFLICT (key) DO UPDATE SET process = excluded.process,"
                    " status = excluded.status, body = excluded.body", rows)
            conn.execute("DELETE FROM alert_states WHERE status = %s AND NOT (key = ANY(%s))",
                         (Status.PENDING.value, [a.key for a in alerts]))
        self._write(f"saving {len(rows)} alerts", work)

    def record_changes(self, changes: Sequence[AlertChange]) -> None:
        rows = history_rows(changes)

        def work(conn: Conn) -> None:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO alert_history (key, change, status, at_us, summary,"
                                " body) VALUES (%s,%s,%s,%s,%s,%s)", rows)
        self._write(f"recording {len(rows)} alert changes", work)

    def history(self, key: str | None = None, limit: int = 100) -> list[AlertChange]:
        sql = "SELECT change, at_us, body FROM alert_history"
        args: list[Any] = []
        if key is not None:
            sql += " WHERE key = %s"
            args.append(key)
        rows = self._read("reading the alert history", sql + " ORDER BY seq DESC LIMIT %s",
                          [*args, limit])
        return [AlertChange(Change(change), alert_from_json(json.loads(body)), stored_time(at_us))
                for change, at_us, body in rows]

    def fired(self) -> dict[tuple[str, str], int]:
        rows = self._read("counting the alerts fired",
                          "SELECT body::jsonb ->> 'process', body::jsonb ->> 'rule', COUNT(*)"
                          " FROM alert_history WHERE change = 'firing' GROUP BY 1, 2")
        return {(str(process), str(rule)): int(n) for process, rule, n in rows}

    # -- evaluation leases and the fenced commit -----------------------------------------------
    def take_leases(self, names: Sequence[str], holder: str, lease: timedelta) -> list[str]:
        """As ``SQLiteAlertState.take_leases``: an upsert per name, which locks the row and
        re-checks holder and expiry on its latest version, so two workers never both win."""
        wall = wall_us()
        until = wall + lease // _US

        def work(conn: Conn) -> list[str]:
            return [name for name in names if conn.execute(
                "INSERT INTO alert_leases (name, holder, until_us) VALUES (%s,%s,%s)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " until_us = excluded.until_us WHERE alert_leases.holder = excluded.holder"
                " OR alert_leases.until_us <= %s", (name, holder, until, wall)).rowcount == 1]
        return self._write(f"taking {len(names)} leases", work)

    def release_leases(self, names: Sequence[str], holder: str) -> None:
        self._write("releasing leases", lambda conn: conn.execute(
            "DELETE FROM alert_leases WHERE holder = %s AND name = ANY(%s)",
            (holder, list(names))))

    def commit(self, evaluation_alerts: Iterable[Alert], changes: Sequence[AlertChange],
               processes: Collection[str], holder: str) -> None:
        """As ``SQLiteAlertState.commit``; the lease rows stay locked until the commit, so
        no worker takes one over half way."""
        scope = sorted(set(processes))
        alerts = [a for a in evaluation_alerts if a.process in scope]
        rows = [(a.key, a.process, a.status.value, json.dumps(a.to_json())) for a in alerts]
        history = history_rows(changes)

        def work(conn: Conn) -> None:
            held = conn.execute(
                "SELECT name FROM alert_leases WHERE holder = %s AND until_us > %s"
                " AND name = ANY(%s) FOR UPDATE",
                (holder, wall_us(), [evaluation_lease(p) for p in scope])).fetchall()
            lease_check(len(held), len(scope), holder)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO alert_states (key, process, status, body) VALUES (%s,%s,%s,%s)"
                    " ON CONFLICT (key) DO UPDATE SET process = excluded.process,"
                    " status = excluded.status, body = excluded.body", rows)
                cur.executemany("INSERT INTO alert_history (key, change, status, at_us, summary,"
                                " body) VALUES (%s,%s,%s,%s,%s,%s)", history)
            conn.execute("DELETE FROM alert_states WHERE status = %s AND process = ANY(%s)"
                         " AND NOT (key = ANY(%s))",
                         (Status.PENDING.value, scope, [a.key for a in alerts]))
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

        def work(conn: Conn) -> None:
            added = conn.execute("INSERT INTO alert_silences (id, created_us, until_us, body)"
                                 " VALUES (%s,%s,%s,%s) ON CONFLICT (id) DO NOTHING", row)
            if added.rowcount != 1:
                raise AlertStateError(f"a silence with id {silence.id!r} already exists")
        self._write(f"adding silence {silence.id!r}", work)
        return silence

    def silences(self, active_at: datetime | None = None) -> list[Silence]:
        sql, args = "SELECT body FROM alert_silences", []
        if active_at is not None:
            sql += " WHERE created_us <= %s AND %s < until_us"
            args = [stored_us(active_at)] * 2
        rows = self._read("reading the silences", sql + " ORDER BY created_us, id", args)
        return [silence_from_json(json.loads(body)) for (body,) in rows]

    def expire_silence(self, id: str, by: str, now: datetime) -> Silence:
        def work(conn: Conn) -> Silence:
            row = conn.execute("SELECT body FROM alert_silences WHERE id = %s FOR UPDATE",
                               (id,)).fetchone()
            if row is None:
                raise AlertStateError(f"no silence with id {id!r}")
            silence = silence_from_json(json.loads(row[0]))
            if silence.until <= now:
                return silence  # already over: nothing to do
            silence = replace(silence, until=now)
            conn.execute("UPDATE alert_silences SET until_us = %s, body = %s, expired_by = %s,"
                         " expired_us = %s WHERE id = %s",
                         (stored_us(now), json.dumps(silence_to_json(silence)), by, stored_us(now), id))
            return silence
        return self._write(f"expiring silence {id!r}", work)

    # -- acknowledgements and reviews --------------------------------------------------------
    def acknowledge(self, ack: Acknowledgement) -> None:
        def work(conn: Conn) -> None:
            row = conn.execute("SELECT status FROM alert_states WHERE key = %s FOR SHARE",
                               (ack.key,)).fetchone()
            if row is None:
                raise AlertStateError(f"no alert with key {ack.key!r}")
            if row[0] == Status.RESOLVED.value:
                raise AlertStateError(f"alert {ack.key!r} is resolved: nothing to acknowledge")
            conn.execute("INSERT INTO alert_acks (key, who, at_us, note) VALUES (%s,%s,%s,%s)",
                         (ack.key, ack.by, stored_us(ack.at), ack.note))
        self._write(f"acknowledging {ack.key!r}", work)

    def acknowledgements(self) -> dict[str, Acknowledgement]:
        rows = self._read("reading the acknowledgements",
                          "SELECT key, who, at_us, note FROM alert_acks ORDER BY at_us, seq")
        return {key: Acknowledgement(key, who, stored_time(at_us), note) for key, who, at_us, note in rows}

    def record_review(self, review: Review) -> None:
        row = (review.process, review.by, stored_us(review.at), review.note)
        self._write(f"recording a review of {review.process!r}", lambda conn: conn.execute(
            "INSERT INTO process_reviews (process, who, at_us, note) VALUES (%s,%s,%s,%s)", row))

    def reviews(self, process: str | None = None) -> list[Review]:
        sql, args = "SELECT process, who, at_us, note FROM process_reviews", []
        if process is not None:
            sql, args = sql + " WHERE process = %s", [process]
        rows = self._read("reading the reviews", sql + " ORDER BY at_us DESC, seq DESC", args)
        return [Review(p, who, stored_time(at_us), note) for p, who, at_us, note in rows]
