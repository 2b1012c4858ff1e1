"""The end activities learned per process, kept with how they were learned and every change.

Table (component ``end_activities``, both databases, each query written once over
storage/tables.py): ``end_activities (process, version, at_us, activities, cases, shares,
reason)``, one row per version of a process's learned end activities: version 1 when they were
first learned, one more at each change, never updated in place, so the current set is the
highest version and the rows before it say what changed when, and why. ``activities`` is a
JSON list, ``shares`` a JSON object (the share of the finished cases each ends), ``cases`` the
finished cases they were learned from. What the rows mean (how they are learned, when they may
change) is alerts/ends.py's.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from storage.migrations import Migration, Schema
from storage.pg_session import PostgresSession
from storage.tables import Run, SQLiteTables, Tables
from storage.times import stored_time, stored_us
from storage.urls import parse_url

_TABLE = ("CREATE TABLE IF NOT EXISTS end_activities (process TEXT NOT NULL,"
          " version INTEGER NOT NULL, at_us {int} NOT NULL, activities TEXT NOT NULL,"
          " cases INTEGER NOT NULL, shares TEXT NOT NULL, reason TEXT NOT NULL,"
          " PRIMARY KEY (process, version))")
SQLITE_SCHEMA = Schema("end_activities", "the learned end activities", "end_activities", (
    Migration(1, "learned end activities, one row per version", (_TABLE.format(int="INTEGER"),)),))
POSTGRES_SCHEMA = Schema("end_activities", "the learned end activities", "end_activities", (
    Migration(1, "learned end activities, one row per version", (_TABLE.format(int="BIGINT"),)),))
_COLUMNS = "process, version, at_us, activities, cases, shares, reason"
_CURRENT = (f"SELECT {_COLUMNS} FROM end_activities e WHERE version ="  # noqa: S608 (constants)
            " (SELECT MAX(version) FROM end_activities m WHERE m.process = e.process)")


@dataclass(frozen=True)
class KeptEnds:
    """One version of a process's learned end activities and how it was learned."""

    process: str
    activities: tuple[str, ...]
    learned_at: datetime
    """The evaluation moment ("now") it was learned or changed at."""
    cases: int
    """The finished cases it was learned from."""
    shares: dict[str, float] = field(default_factory=dict)
    """The share of those cases each activity ends."""
    reason: str = ""
    """Why this version: learned first, or what changed."""
    version: int = 1


def _row(row: tuple[Any, ...]) -> KeptEnds:
    process, version, at_us, activities, cases, shares, reason = row
    return KeptEnds(str(process), tuple(json.loads(activities)), stored_time(int(at_us)),
                    int(cases), {str(k): float(v) for k, v in json.loads(shares).items()},
                    str(reason), int(version))


class EndActivityTables:
    """The learned end activities in the store a URL names (SQLite file or PostgreSQL)."""

    def __init__(self, url: str, session: PostgresSession | None = None) -> None:
        kind, target = parse_url(url)
        if kind == "postgresql":
            from storage.pg_tables import PostgresTables  # the driver only where it is used

            self._tables: Tables = PostgresTables(target, POSTGRES_SCHEMA, session)
        else:
            self._tables = SQLiteTables(Path(target), SQLITE_SCHEMA)

    def current(self) -> dict[str, KeptEnds]:
        """Every process's current version."""
        rows = self._tables.read("reading the learned end activities", _CURRENT)
        return {kept.process: kept for kept in map(_row, rows)}

    def history(self, process: str) -> list[KeptEnds]:
        """Every version of one process, the first first."""
        rows = self._tables.read(
            f"reading the end activities of {process!r}",
            f"SELECT {_COLUMNS} FROM end_activities WHERE process = ? ORDER BY version",  # noqa: S608
            (process,))
        return [_row(row) for row in rows]

    def keep(self, kept: KeptEnds) -> bool:
        """Add a version; False (nothing written) when that version exists already (another
        worker kept its own first)."""
        def work(run: Run) -> bool:
            return run.count(
                f"INSERT INTO end_activities ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
                " ON CONFLICT (process, version) DO NOTHING",
                (kept.process, kept.version, stored_us(kept.learned_at),
                 json.dumps(list(kept.activities)), kept.cases,
                 json.dumps(kept.shares, allow_nan=False), kept.reason)) == 1
        return self._tables.write(f"keeping the end activities of {kept.process!r}", work)

    def close(self) -> None:
        """Let the connection go."""
        self._tables.close()


def peek_end_activities(url: str, session: PostgresSession | None = None) -> dict[str, KeptEnds]:
    """Every process's current learned end activities, read without creating or changing
    anything (none where the store or its table does not exist yet): for ``doctor``."""
    kind, target = parse_url(url)
    if kind == "postgresql":
        from storage.pg_events import connect_postgres

        with connect_postgres(target, session=session) as conn:
            found = conn.execute("SELECT to_regclass('end_activities') IS NOT NULL").fetchone()
            if not found or not found[0]:
                return {}
            rows = conn.execute(_CURRENT).fetchall()
    else:
        path = Path(target)
        if not path.exists():
            return {}
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro",
                                                uri=True)) as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                          " AND name = 'end_activities'").fetchone() is None:
                return {}
            rows = db.execute(_CURRENT).fetchall()
    return {kept.process: kept for kept in map(_row, rows)}
