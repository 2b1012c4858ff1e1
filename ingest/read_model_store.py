"""The read models' tables: per-process days and open cases as JSON, and the fold's watermark.

The read models (mining/read_model.py) are folded from the store's arrival sequence and kept
here, beside the events, so that a page, an API call or a new instance reads them instead of
the event history. This module stores them as opaque JSON documents; what is in a document is
mining's (`Figures.to_doc`, `CaseFacts.to_doc`).

Tables (component ``read_models``, both databases; each query written once, the dialects
agree on ``INSERT ... ON CONFLICT ... DO UPDATE``):
- ``read_model_marks (name, seq)``: the last arrival seq folded;
- ``read_model_days (process, day_us, doc)``: the figures of the cases completed that UTC day;
- ``read_model_open (process, case_id, doc)``: the facts of each open case;
- ``read_model_totals (process, completed, open)``: the figures of all completed and of all
  open cases (what "all time" reads in one row, and what a folder starts from).

Folding is idempotent by sequence: `save` writes a batch's changes and moves the mark from the
seq it was folded after to the new one in one transaction, and only if the mark still is where
the folder read it (compare and set). Two instances folding at once: one saves, the other is
told (`save` returns False), reloads and goes on after the winner's mark. No event is folded
twice, none is skipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ingest.errors import StoreError
from ingest.migrations import Migration, Schema, migrate_postgres, migrate_sqlite
from ingest.pg_session import PostgresSession
from ingest.sqlite import connect, transaction
from ingest.store import mask_url, parse_url, scrub
from schemas.event import CaseEvent

_KEYS_PER_QUERY: Final = 500
_TABLES = (
    "CREATE TABLE IF NOT EXISTS read_model_marks (name TEXT PRIMARY KEY, seq {int} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS read_model_days (process TEXT NOT NULL, day_us {int} NOT NULL,"
    " doc TEXT NOT NULL, PRIMARY KEY (process, day_us))",
    "CREATE TABLE IF NOT EXISTS read_model_open (process TEXT NOT NULL, case_id TEXT NOT NULL,"
    " doc TEXT NOT NULL, PRIMARY KEY (process, case_id))",
    "CREATE TABLE IF NOT EXISTS read_model_totals (process TEXT PRIMARY KEY,"
    " completed TEXT NOT NULL, open TEXT NOT NULL)",
)
_REFOLD = Migration(2, "read models with working time, rework cases, loops and the shape they "
                      "were folded with: folded again from the events", (
                          *(f"DELETE FROM {t}" for t in (  # noqa: S608 (constants)
                              "read_model_marks", "read_model_days", "read_model_open",
                              "read_model_totals")),
                          "ALTER TABLE read_model_totals ADD COLUMN shape TEXT NOT NULL DEFAULT ''"))
"""New figures in the documents: the tables are emptied, and the next fold (any folder) starts
from the first event, as `backlight rebuild` would. ``shape`` is what a process was folded with
(its end activities and calendar): a folder with another shape folds that process again."""
SQLITE_SCHEMA = Schema("read_models", "the read models", "read_model_marks", (
    Migration(1, "read model marks, days and open cases", tuple(t.format(int="INTEGER") for t in _TABLES)),
    _REFOLD))
POSTGRES_SCHEMA = Schema("read_models", "the read models", "read_model_marks", (
    Migration(1, "read model marks, days and open cases", tuple(t.format(int="BIGINT") for t in _TABLES)),
    _REFOLD))

_CASE_EVENTS = (
    "SELECT case_id, event_id, process, activity, time_us, lifecycle, resource, team, attributes"
    " FROM events WHERE process = {p} AND seq <= {p} AND case_id IN ({keys})"
    " ORDER BY case_id, time_us, seq")
_DAY_DOCS = "SELECT day_us, doc FROM read_model_days WHERE process = {p} AND day_us IN ({keys})"
_OPEN_DOCS = "SELECT case_id, doc FROM read_model_open WHERE process = {p} AND case_id IN ({keys})"


@dataclass(frozen=True)
class Stored:
    """What the tables hold for one process: its days' and open cases' documents (JSON text)."""

    days: dict[int, str]
    open_cases: dict[str, str]


class ReadModelTables:
    """The read models' tables in the store a URL names (SQLite file or PostgreSQL)."""

    def __init__(self, url: str, session: PostgresSession | None = None) -> None:
        self.url = url
        self._kind, target = parse_url(url)
        self._p = "%s" if self._kind == "postgresql" else "?"
        try:
            if self._kind == "postgresql":
                from ingest.postgres import apply_limits, connect_postgres

                session = session or PostgresSession()
                self._pg = connect_postgres(target, session=session, limits=False)
                migrate_postgres(self._pg, mask_url(url), POSTGRES_SCHEMA)
                apply_limits(self._pg, session)
            else:
                self._db = connect(Path(target))
                migrate_sqlite(self._db, target, SQLITE_SCHEMA)
        except (sqlite3.Error, OSError, StoreError) as exc:
            raise StoreError(f"opening the read models in {mask_url(url)} failed: "
                             f"{scrub(str(exc), url)}") from exc
        except Exception as exc:  # psycopg.Error: not importable without PostgreSQL
            raise StoreError(f"opening the read models in {mask_url(url)} failed: "
                             f"{scrub(str(exc), url)}") from exc

    def _tx(self) -> AbstractContextManager[Any]:
        return self._pg.transaction() if self._kind == "postgresql" else transaction(self._db)

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._pg if self._kind == "postgresql" else self._db
        cursor = conn.execute(sql.format(p=self._p), tuple(params))
        return list(cursor.fetchall()) if cursor.description else []

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Database errors as a `StoreError` naming what failed (the URL's password masked)."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{doing} in {mask_url(self.url)} failed: {scrub(str(exc), self.url)}") from exc

    # -- reading --
    def mark(self, name: str) -> int:
        """The last seq folded into the named read models; 0 before any."""
        with self._errors("reading the read models' mark"):
            rows = self._run("SELECT seq FROM read_model_marks WHERE name = {p}", (name,))
        return int(rows[0][0]) if rows else 0

    def load(self, process: str) -> Stored:
        """One process's stored days and open cases."""
        with self._errors(f"reading the read model of {process!r}"):
            days = self._run("SELECT day_us, doc FROM read_model_days WHERE process = {p}", (process,))
            cases = self._run("SELECT case_id, doc FROM read_model_open WHERE process = {p}", (process,))
        return Stored({int(d): str(doc) for d, doc in days}, {str(c): str(doc) for c, doc in cases})

    def days(self, process: str, since_day_us: int | None = None,
             until_day_us: int | None = None) -> dict[int, str]:
        """The documents of a process's days from ``since_day_us`` to ``until_day_us``, both
        included (unbounded where None)."""
        with self._errors(f"reading the days of {process!r}"):
            rows = self._run("SELECT day_us, doc FROM read_model_days WHERE process = {p}"
                             " AND day_us >= {p} AND day_us <= {p} ORDER BY day_us",
                             (process, -(2**62) if since_day_us is None else since_day_us,
                              2**62 if until_day_us is None else until_day_us))
        return {int(d): str(doc) for d, doc in rows}

    def totals(self, process: str) -> tuple[str, str] | None:
        """The documents of the process's completed and open totals; None before any fold."""
        with self._errors(f"reading the totals of {process!r}"):
            rows = self._run("SELECT completed, open FROM read_model_totals WHERE process = {p}", (process,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def shape(self, process: str) -> str | None:
        """What the process was folded with (end activities, calendar); None before any fold."""
        with self._errors(f"reading the totals of {process!r}"):
            rows = self._run("SELECT shape FROM read_model_totals WHERE process = {p}", (process,))
        return str(rows[0][0]) if rows else None

    def day_docs(self, process: str, days: Collection[int]) -> dict[int, str]:
        """The documents of those of these days that exist."""
        with self._errors(f"reading the days of {process!r}"):
            rows = self._select_in(_DAY_DOCS, (process,), days)
        return {int(d): str(doc) for d, doc in rows}

    def open_docs_of(self, process: str, case_ids: Collection[str]) -> dict[str, str]:
        """The documents of those of these cases that are open."""
        with self._errors(f"reading open cases of {process!r}"):
            rows = self._select_in(_OPEN_DOCS, (process,), case_ids)
        return {str(c): str(doc) for c, doc in rows}

    def _select_in(self, sql: str, leading: Sequence[Any], keys: Collection[Any]) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` with its ``{keys}`` an IN list of ``keys`` (after the ``leading``
        parameters), asked for a bounded number of keys at a time."""
        wanted, rows = list(keys), []
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start:start + _KEYS_PER_QUERY]
            rows += self._run(sql.replace("{keys}", ", ".join(["{p}"] * len(chunk))), (*leading, *chunk))
        return rows

    def last_day(self, process: str) -> int | None:
        """The last UTC day on which a case of the process completed (its start in µs)."""
        with self._errors(f"reading the days of {process!r}"):
            rows = self._run("SELECT MAX(day_us) FROM read_model_days WHERE process = {p}", (process,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def open_count(self, process: str) -> int:
        """How many cases of the process are open."""
        with self._errors(f"counting the open cases of {process!r}"):
            rows = self._run("SELECT COUNT(*) FROM read_model_open WHERE process = {p}", (process,))
        return int(rows[0][0])

    def case_events(self, process: str, case_ids: Collection[str],
                    up_to_seq: int) -> dict[str, list[CaseEvent]]:
        """The stored events of these cases with seq at most ``up_to_seq``, each case's in case
        order (time, then seq): what the read model folded of them before. (``up_to_seq`` is a
        mark read through ``since``: every row up to it is committed already, so a plain read
        sees them all, on PostgreSQL too.)"""
        out: dict[str, list[CaseEvent]] = {}
        with self._errors(f"reading cases of {process!r}"):
            for row in self._select_in(_CASE_EVENTS, (process, up_to_seq), case_ids):
                case_id, event_id, proc, activity, time_us, lifecycle, resource, team, attrs = row
                out.setdefault(case_id, []).append(CaseEvent(
                    event_id, proc, case_id, activity, int(time_us), lifecycle, resource, team, attrs))
        return out

    # -- writing --
    def save(self, name: str, after: int, mark: int,
             days: Mapping[tuple[str, int], str | None],
             open_cases: Mapping[tuple[str, str], str | None],
             totals: Mapping[str, tuple[str, str, str]]) -> bool:
        """Write the changes of the events folded after seq ``after`` up to ``mark`` (a None
        document deletes) and the processes' new totals (completed, open, and the shape they
        were folded with), in one transaction, if the mark is still ``after``; False (nothing
        written) when another folder moved it first."""
        with self._errors("saving the read models"), self._tx():
            self._run("INSERT INTO read_model_marks (name, seq) VALUES ({p}, 0)"
                      " ON CONFLICT (name) DO NOTHING", (name,))
            # A conditional update, not a read then a write: on PostgreSQL a concurrent saver
            # waits for this row and then finds the mark moved (READ COMMITTED re-checks).
            moved = self._run("UPDATE read_model_marks SET seq = {p} WHERE name = {p} AND seq = {p}"
                              " RETURNING seq", (mark, name, after))
            if not moved:
                return False
            for (process, day), doc in days.items():
                if doc is None:
                    self._run("DELETE FROM read_model_days WHERE process = {p} AND day_us = {p}",
                              (process, day))
                else:
                    self._run("INSERT INTO read_model_days (process, day_us, doc) VALUES ({p}, {p}, {p})"
                              " ON CONFLICT (process, day_us) DO UPDATE SET doc = excluded.doc",
                              (process, day, doc))
            for (process, case_id), doc in open_cases.items():
                if doc is None:
                    self._run("DELETE FROM read_model_open WHERE process = {p} AND case_id = {p}",
                              (process, case_id))
                else:
                    self._run("INSERT INTO read_model_open (process, case_id, doc) VALUES ({p}, {p}, {p})"
                              " ON CONFLICT (process, case_id) DO UPDATE SET doc = excluded.doc",
                              (process, case_id, doc))
            for process, (completed, still_open, shape) in totals.items():
                self._run("INSERT INTO read_model_totals (process, completed, open, shape)"
                          " VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (process) DO UPDATE SET"
                          " completed = excluded.completed, open = excluded.open,"
                          " shape = excluded.shape", (process, completed, still_open, shape))
        return True

    def clear(self, name: str, process: str | None = None) -> None:
        """Forget the read models (of one process, or all and the mark): before a rebuild."""
        with self._errors("clearing the read models"), self._tx():
            if process is None:
                self._run("DELETE FROM read_model_marks WHERE name = {p}", (name,))
                for table in ("read_model_days", "read_model_open", "read_model_totals"):
                    self._run(f"DELETE FROM {table}")  # noqa: S608 (constant names)
            else:
                for table in ("read_model_days", "read_model_open", "read_model_totals"):
                    self._run(f"DELETE FROM {table} WHERE process = {{p}}", (process,))  # noqa: S608

    def close(self) -> None:
        """Let the connection go."""
        (self._pg if self._kind == "postgresql" else self._db).close()
