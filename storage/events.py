"""The event store's interface and what its two implementations share.

Every backend keeps each event once (``event_id`` is unique; writing an event that is already
there does nothing), keeps times in UTC, and hands one process's events back as a polars frame
with the columns in ``FRAME_SCHEMA``. ``SQLiteStore`` (storage/sqlite_events.py) and
``PostgresStore`` (storage/pg_events.py) implement it; both pass the same contract tests
(tests/test_store_contract.py). Their schemas are versioned and upgraded in place when opened
(storage/migrations.py); storage/open.py opens the one a URL names.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import polars as pl
from msgspec.structs import astuple

from schemas.event import CaseEvent, to_time_us
from schemas.frame import FRAME_SCHEMA, Coordinates
from storage.open_cases import OpenCase

FRAME_COLUMNS = "event_id, case_id, activity, time_us, lifecycle, resource, team, attributes, seq"
"""The ``events`` columns that make a FRAME_SCHEMA row, in its order (times as microseconds)."""
EVENT_COLUMNS = ("event_id", "process", "case_id", "activity", "time_us", "lifecycle", "resource",
                 "team", "attributes", "topic", "partition", "offset")
"""The columns a write fills, in the order of ``event_row``."""
READ_CHUNK = 10_000
"""Rows fetched at a time by ``events``: a process is read in chunks, never as one list."""
_ROW_SCHEMA = {**FRAME_SCHEMA, "timestamp": pl.Int64()}
"""The rows as read: times as integer microseconds, in FRAME_SCHEMA's column order."""


# event_row and event_values read both Structs' fields in declaration order as the columns.
assert CaseEvent.__struct_fields__ + Coordinates.__struct_fields__ == EVENT_COLUMNS

StoredEvent = tuple[int, CaseEvent, Coordinates | None]
"""An event as ``EventStore.since`` returns it: (arrival seq, event, where it came from)."""


@dataclass(frozen=True)
class ProcessCount:
    process: str
    events: int
    cases: int


class EventStore(Protocol):
    """What the consumer writes to and mining reads from.

    The write contract, the same on every backend: ``write`` stores a batch in one transaction
    (all of it or, on error, none), and whether each event is new is decided by the insert
    itself (``INSERT ... ON CONFLICT (event_id) DO NOTHING``, its stored rows told by RETURNING
    or, on SQLite, by the arrival seqs it took), not by a read before it, so it holds under
    concurrent writers: however many writers store overlapping batches at once, each event is
    stored once and reported new by exactly one ``write`` call, at its first occurrence in that
    batch. A write that raises may still have committed (the connection dropped after the
    commit was sent): writing the batch again is safe, and reports those events as not new.

    A reader following the arrival seqs (``since``, ``changed_since``, ``last_seq``) never
    sees a gap that fills in later: on SQLite seqs increase with commit order; on PostgreSQL,
    whose writers commit in parallel, those reads see only the rows no write in flight can
    precede (storage/pg_events.py), so a commit may show there a moment after it returned.
    Seqs may have gaps (PostgreSQL uses up numbers on duplicates and failed writes).
    A ``StoreError`` is the only error a store raises; its message never shows a password.
    On ``write`` it is either transient (retrying the same batch may succeed) or a
    ``RowRejected``: the database refused the content of a row of the batch (nothing of the
    batch is stored; the consumer bisects it to find the row, ingest/store_writes.py).
    """

    def write(
        self, events: Sequence[CaseEvent], origins: Sequence[Coordinates | None] | None = None
    ) -> list[bool]:
        """Store a batch in one transaction; say for each event whether it was new (not
        already stored, and not a repeat of an earlier event in the same batch)."""
        ...

    def events(self, process: str, since: datetime | None = None,
               until: datetime | None = None, *,
               cases_since: datetime | None = None) -> pl.DataFrame:
        """The events of one process, optionally in [since, until), as a ``FRAME_SCHEMA`` frame
        in time order (ties in arrival order), read from the store in chunks. With
        ``cases_since``, only the cases with an event at or after it (all their events in
        the range, earlier ones too): what a reader bounded in time needs, read through the
        indexes at the cost of those cases, not of the process's history."""
        ...

    def counts(self) -> list[ProcessCount]:
        """Events and cases per process, by process name."""
        ...

    def open_cases(self, process: str, end_activities: Collection[str]) -> list[OpenCase]:
        """The process's cases whose latest event is not one of ``end_activities``, by case
        id, each with its current step and age (read without loading the process's events)."""
        ...

    def last_seq(self) -> int:
        """The highest arrival seq stored (0 when the store is empty)."""
        ...

    def latest(self, process: str, until: datetime | None = None) -> datetime | None:
        """The time of the process's latest event (before ``until``); None without one."""
        ...

    def out_of_range(self, process: str, latest: datetime) -> int:
        """How many of the process's events have a time before 1970 or after ``latest``."""
        ...

    def changed_since(self, seq: int) -> dict[str, int]:
        """The processes with events stored after ``seq``, each with its highest new seq (what
        a reader caching per process checks to know which of its entries are stale)."""
        ...

    def since(self, seq: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` stored events with an arrival seq above ``seq``, in seq order."""
        ...

    def subscriber_mark(self, name: str) -> int | None:
        """The last seq the named subscriber has handled, None if it never recorded one."""
        ...

    def save_subscriber_mark(self, name: str, seq: int) -> None:
        """Record that the named subscriber has handled every event up to ``seq``."""
        ...

    def close(self) -> None: ...


_NO_ORIGIN = (None, None, None)


def event_row(event: CaseEvent, origin: Coordinates | None) -> tuple[Any, ...]:
    """An event as the values of ``EVENT_COLUMNS``."""
    return astuple(event) + (_NO_ORIGIN if origin is None else astuple(origin))


def event_values(events: Sequence[CaseEvent], origins: Sequence[Coordinates | None]) -> list[Any]:
    """The values of ``event_row`` for each event, one flat list (a multi-row INSERT's
    parameters). ``CaseEvent`` and ``Coordinates`` declare their fields in the order of
    ``EVENT_COLUMNS``, so msgspec's C ``astuple`` gives them (4x faster than by name)."""
    values: list[Any] = []
    extend = values.extend
    for event, origin in zip(events, origins, strict=True):
        extend(astuple(event))
        extend(_NO_ORIGIN if origin is None else astuple(origin))
    return values


def first_inserted(ids: Sequence[str], inserted: set[str]) -> list[bool]:
    """The new-flags of a batch: an event is new where the insert stored it, at its first
    occurrence in the batch (a repeat within the batch is not new)."""
    seen: set[str] = set()
    flags = []
    for event_id in ids:
        flags.append(event_id in inserted and event_id not in seen)
        seen.add(event_id)
    return flags


def frame_from_rows(chunks: Iterable[Sequence[tuple[Any, ...]]]) -> pl.DataFrame:
    """A FRAME_SCHEMA frame from chunks of ``FRAME_COLUMNS`` rows (each chunk becomes a small
    frame as it arrives, so the rows as Python tuples never add up to the whole process)."""
    frames = [pl.DataFrame(rows, schema=_ROW_SCHEMA, orient="row") for rows in chunks if rows]
    if not frames:
        return pl.DataFrame(schema=FRAME_SCHEMA)
    # Not rechunked: one contiguous copy of every column would hold the chunks and the copy at
    # once (about 30 MB more at peak for BPIC 2012); every reader sorts or filters it anyway.
    frame = pl.concat(frames, rechunk=False)
    return frame.select(
        pl.col(name).cast(dtype) if name != "timestamp"
        else pl.col(name).cast(pl.Int64).cast(dtype)
        for name, dtype in FRAME_SCHEMA.items())


def stored_event(row: Sequence[Any]) -> StoredEvent:
    """A ``since`` row (seq, the event's columns, topic, partition, offset) as a StoredEvent."""
    s, eid, proc, case, act, t, lc, res, team, attrs, topic, part, off = row
    return (int(s), CaseEvent(eid, proc, case, act, int(t), lc, res, team, attrs),
            None if topic is None else Coordinates(topic, int(part), int(off)))


OUT_OF_RANGE = (
    "SELECT (SELECT COUNT(*) FROM events{hint} WHERE process = ? AND time_us < 0)"
    " + (SELECT COUNT(*) FROM events{hint} WHERE process = ? AND time_us > ?)")
"""Two ranges of the (process, time_us) index: events before 1970 and after the latest allowed
(``{hint}``: SQLite names the index, its planner would otherwise count along the process's
case index, all of its events)."""


def latest_query(process: str, until: datetime | None, mark: str) -> tuple[str, list[object]]:
    """The SELECT of ``EventStore.latest`` (one step down the (process, time_us) index)."""
    sql = f"SELECT MAX(time_us) FROM events WHERE process = {mark}"  # noqa: S608 (constants)
    params: list[object] = [process]
    if until is not None:
        sql += f" AND time_us < {mark}"
        params.append(int(to_time_us(until)))
    return sql, params


def events_query(process: str, since: datetime | None, until: datetime | None,
                 mark: str, cases_since: datetime | None = None,
                 index_hints: bool = False) -> tuple[str, list[object]]:
    """The SELECT of ``EventStore.events`` with ``mark`` as the parameter placeholder.

    ``cases_since`` is a semi-join: the (process, time_us) index finds the cases touched since
    then, the (process, case_id, time_us) index their events. ``index_hints`` (SQLite) names
    those indexes: without statistics SQLite's planner would scan the process's whole time
    index instead (PostgreSQL's planner has statistics and finds the same plan itself)."""
    by_case = " INDEXED BY events_process_case" if index_hints and cases_since else ""
    by_time = " INDEXED BY events_process_time" if index_hints else ""
    sql = f"SELECT {FRAME_COLUMNS} FROM events{by_case} WHERE process = {mark}"  # noqa: S608
    params: list[object] = [process]
    if cases_since is not None:
        sql += (f" AND case_id IN (SELECT case_id FROM events{by_time}"  # noqa: S608 (constants)
                f" WHERE process = {mark} AND time_us >= {mark}")
        params += [process, int(to_time_us(cases_since))]
        if until is not None:
            sql += f" AND time_us < {mark}"
            params.append(int(to_time_us(until)))
        sql += ")"
    if since is not None:
        sql += f" AND time_us >= {mark}"
        params.append(int(to_time_us(since)))
    if until is not None:
        sql += f" AND time_us < {mark}"
        params.append(int(to_time_us(until)))
    return sql + " ORDER BY time_us, seq", params


