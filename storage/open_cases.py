"""A process's open cases read from the store: one row per case whose latest event is not one
of the process's end activities, without reading the process's events into memory.

Both backends run the same window query (SQLite 3.25+, PostgreSQL); it walks the
``events_process_case`` index (process, case_id, time_us) and returns only the open cases.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OpenCase:
    """A case still in progress: where it is (its latest event), since when, how far it got."""

    case_id: str
    activity: str
    """The activity of its latest event (its current step)."""
    last_us: int
    """When its latest event happened (microseconds since the epoch)."""
    started_us: int
    """When its first event happened."""
    events: int


def open_cases_query(process: str, end_activities: Collection[str],
                     mark: str) -> tuple[str, list[object]]:
    """The SELECT of ``EventStore.open_cases`` with ``mark`` as the parameter placeholder.
    A case's latest event is the last by time, ties broken by arrival (as ``events`` orders)."""
    ends = sorted(set(end_activities))
    sql = (
        "SELECT case_id, activity, time_us, started_us, n FROM ("  # noqa: S608 (marks only)
        " SELECT case_id, activity, time_us,"
        "  MIN(time_us) OVER (PARTITION BY case_id) AS started_us,"
        "  COUNT(*) OVER (PARTITION BY case_id) AS n,"
        "  ROW_NUMBER() OVER (PARTITION BY case_id ORDER BY time_us DESC, seq DESC) AS latest"
        f" FROM events WHERE process = {mark}) AS cases WHERE latest = 1"
    )
    if ends:
        sql += f" AND activity NOT IN ({', '.join([mark] * len(ends))})"
    return sql + " ORDER BY case_id", [process, *ends]


def open_cases(rows: Sequence[Sequence[Any]]) -> list[OpenCase]:
    """The query's rows as ``OpenCase``s."""
    return [OpenCase(str(case), str(activity), int(last), int(started), int(n))
            for case, activity, last, started, n in rows]
