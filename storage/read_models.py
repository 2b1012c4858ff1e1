"""The read models' tables: per-process days and open cases as JSON, and the fold's watermark.

The read models (mining/read_model.py) are folded from the store's arrival sequence and kept
here, beside the events, so that a page, an API call or a new instance reads them instead of
the event history. This module stores them as opaque JSON documents; what is in a document is
mining's (`Figures.to_doc`, `CaseFacts.to_doc`).

Tables (component ``read_models``, both databases; each query written once over
storage/tables.py, the dialects agree on ``INSERT ... ON CONFLICT ... DO UPDATE``):
- ``read_model_marks (name, seq, saved_us)``: the last arrival seq folded, and when it moved;
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

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from schemas.event import CaseEvent
from storage.migrations import Migration, Schema
from storage.pg_session import PostgresSession
from storage.tables import Run, SQLiteTables, Tables
from storage.urls import parse_url

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
_SAVED_AT = Migration(3, "when the mark was last moved, so that a reader can tell another "
                        "instance is folding", (
                            "ALTER TABLE read_model_marks ADD COLUMN saved_us BIGINT NOT NULL DEFAULT 0",))
SQLITE_SCHEMA = Schema("read_models", "the read models", "read_model_marks", (
    Migration(1, "read model marks, days and open cases", tuple(t.format(int="INTEGER") for t in _TABLES)),
    _REFOLD, _SAVED_AT))
POSTGRES_SCHEMA = Schema("read_models", "the read models", "read_model_marks", (
    Migration(1, "read model marks, days and open cases", tuple(t.format(int="BIGINT") for t in _TABLES)),
    _REFOLD, _SAVED_AT))

_CASE_EVENTS = (
    "SELECT case_id, event_id, process, activity, time_us, lifecycle, resource, team, attributes"
    " FROM events WHERE process = ? AND seq <= ? AND case_id IN ({keys})"
    " ORDER BY case_id, time_us, seq")
_DAY_DOCS = "SELECT day_us, doc FROM read_model_days WHERE process = ? AND day_us IN ({keys})"
_OPEN_DOCS = "SELECT case_id, doc FROM read_model_open WHERE process = ? AND case_id IN ({keys})"


@dataclass(frozen=True)
class Stored:
    """What the tables hold for one process: its days' and open cases' documents (JSON text)."""

    days: dict[int, str]
    open_cases: dict[str, str]


class ReadModelTables:
    """The read models' tables in the store a URL names (SQLite file or PostgreSQL)."""

    def __init__(self, url: str, session: PostgresSession | None = None) -> None:
        self.url = url
        kind, target = parse_url(url)
        if kind == "postgresql":
            from storage.pg_tables import PostgresTables  # the driver only where it is used

            self._tables: Tables = PostgresTables(target, POSTGRES_SCHEMA, session)
        else:
            self._tables = SQLiteTables(Path(target), SQLITE_SCHEMA)

    def _read(self, doing: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._tables.read(doing, sql, params)

    # -- reading --
    def mark(self, name: str) -> int:
        """The last seq folded into the named read models; 0 before any."""
        rows = self._read("reading the read models' mark",
                          "SELECT seq FROM read_model_marks WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def processes(self) -> list[str]:
        """The processes the read models hold (every process folded so far)."""
        rows = self._read("reading the read models' processes",
                          "SELECT process FROM read_model_totals ORDER BY process")
        return [str(p) for (p,) in rows]

    def saved_at(self, name: str) -> tuple[int, int]:
        """The named read models' mark and when it was last moved (wall clock, µs since the
        epoch; 0 before any save)."""
        rows = self._read("reading the read models' mark",
                          "SELECT seq, saved_us FROM read_model_marks WHERE name = ?", (name,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def load(self, process: str) -> Stored:
        """One process's stored days and open cases."""
        doing = f"reading the read model of {process!r}"
        days = self._read(doing, "SELECT day_us, doc FROM read_model_days WHERE process = ?",
                          (process,))
        cases = self._read(doing, "SELECT case_id, doc FROM read_model_open WHERE process = ?",
                           (process,))
        return Stored({int(d): str(doc) for d, doc in days}, {str(c): str(doc) for c, doc in cases})

    def days(self, process: str, since_day_us: int | None = None,
             until_day_us: int | None = None) -> dict[int, str]:
        """The documents of a process's days from ``since_day_us`` to ``until_day_us``, both
        included (unbounded where None)."""
        rows = self._read(f"reading the days of {process!r}",
                          "SELECT day_us, doc FROM read_model_days WHERE process = ?"
                          " AND day_us >= ? AND day_us <= ? ORDER BY day_us",
                          (process, -(2**62) if since_day_us is None else since_day_us,
                           2**62 if until_day_us is None else until_day_us))
        return {int(d): str(doc) for d, doc in rows}

    def totals(self, process: str) -> tuple[str, str] | None:
        """The documents of the process's completed and open totals; None before any fold."""
        rows = self._read(f"reading the totals of {process!r}",
                          "SELECT completed, open FROM read_model_totals WHERE process = ?",
                          (process,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def shape(self, process: str) -> str | None:
        """What the process was folded with (end activities, calendar); None before any fold."""
        rows = self._read(f"reading the totals of {process!r}",
                          "SELECT shape FROM read_model_totals WHERE process = ?", (process,))
        return str(rows[0][0]) if rows else None

    def day_docs(self, process: str, days: Collection[int]) -> dict[int, str]:
        """The documents of those of these days that exist."""
        rows = self._select_in(f"reading the days of {process!r}", _DAY_DOCS, (process,), days)
        return {int(d): str(doc) for d, doc in rows}

    def open_docs_of(self, process: str, case_ids: Collection[str]) -> dict[str, str]:
        """The documents of those of these cases that are open."""
        rows = self._select_in(f"reading open cases of {process!r}", _OPEN_DOCS, (process,),
                               case_ids)
        return {str(c): str(doc) for c, doc in rows}

    def _select_in(self, doing: str, sql: str, leading: Sequence[Any],
                   keys: Collection[Any]) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` with its ``{keys}`` an IN list of ``keys`` (after the ``leading``
        parameters), asked for a bounded number of keys at a time."""
        wanted, rows = list(keys), []
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start:start + _KEYS_PER_QUERY]
            rows += self._read(doing, sql.replace("{keys}", ", ".join(["?"] * len(chunk))),
                               (*leading, *chunk))
        return rows

    def last_day(self, process: str) -> int | None:
        """The last UTC day on which a case of the process completed (its start in µs)."""
        rows = self._read(f"reading the days of {process!r}",
                          "SELECT MAX(day_us) FROM read_model_days WHERE process = ?", (process,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def open_count(self, process: str) -> int:
        """How many cases of the process are open."""
        rows = self._read(f"counting the open cases of {process!r}",
                          "SELECT COUNT(*) FROM read_model_open WHERE process = ?", (process,))
        return int(rows[0][0])

    def case_events(self, process: str, case_ids: Collection[str],
                    up_to_seq: int) -> dict[str, list[CaseEvent]]:
        """The stored events of these cases with seq at most ``up_to_seq``, each case's in case
        order (time, then seq): what the read model folded of them before. (``up_to_seq`` is a
        mark read through ``since``: every row up to it is committed already, so a plain read
        sees them all, on PostgreSQL too.)"""
        out: dict[str, list[CaseEvent]] = {}
        for row in self._select_in(f"reading cases of {process!r}", _CASE_EVENTS,
                                   (process, up_to_seq), case_ids):
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
        def work(run: Run) -> bool:
            run.count("INSERT INTO read_model_marks (name, seq) VALUES (?, 0)"
                      " ON CONFLICT (name) DO NOTHING", (name,))
            # A conditional update, not a read then a write: on PostgreSQL a concurrent saver
            # waits for this row and then finds the mark moved (READ COMMITTED re-checks).
            if run.count("UPDATE read_model_marks SET seq = ?, saved_us = ?"
                         " WHERE name = ? AND seq = ?", (mark, time.time_ns() // 1000, name, after)) != 1:
                return False
            for (process, day), doc in days.items():
                if doc is None:
                    run.count("DELETE FROM read_model_days WHERE process = ? AND day_us = ?",
                              (process, day))
                else:
                    run.count("INSERT INTO read_model_days (process, day_us, doc) VALUES (?, ?, ?)"
                              " ON CONFLICT (process, day_us) DO UPDATE SET doc = excluded.doc",
                              (process, day, doc))
            for (process, case_id), doc in open_cases.items():
                if doc is None:
                    run.count("DELETE FROM read_model_open WHERE process = ? AND case_id = ?",
                              (process, case_id))
                else:
                    run.count("INSERT INTO read_model_open (process, case_id, doc) VALUES (?, ?, ?)"
                              " ON CONFLICT (process, case_id) DO UPDATE SET doc = excluded.doc",
                              (process, case_id, doc))
            for process, (completed, still_open, shape) in totals.items():
                run.count("INSERT INTO read_model_totals (process, completed, open, shape)"
                          " VALUES (?, ?, ?, ?) ON CONFLICT (process) DO UPDATE SET"
                          " completed = excluded.completed, open = excluded.open,"
                          " shape = excluded.shape", (process, completed, still_open, shape))
            return True
        return self._tables.write("saving the read models", work)

    def clear(self, name: str, process: str | None = None) -> None:
        """Forget the read models (of one process, or all and the mark): before a rebuild."""
        def work(run: Run) -> None:
            if process is None:
                run.count("DELETE FROM read_model_marks WHERE name = ?", (name,))
                for table in ("read_model_days", "read_model_open", "read_model_totals"):
                    run.count(f"DELETE FROM {table}")  # noqa: S608 (constant names)
            else:
                for table in ("read_model_days", "read_model_open", "read_model_totals"):
                    run.count(f"DELETE FROM {table} WHERE process = ?", (process,))  # noqa: S608
        self._tables.write("clearing the read models", work)

    def close(self) -> None:
        """Let the connection go."""
        self._tables.close()
