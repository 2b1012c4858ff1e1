"""The learned end activities in the store, on SQLite and PostgreSQL: kept with how they were
learned, one version per change with its reason, and read by ``doctor`` without a write."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pg import fresh_database

from storage.end_activities import EndActivityTables, KeptEnds, peek_end_activities

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
FIRST = KeptEnds("loans", ("A_DECLINED", "W_Valideren aanvraag"), AT, 11246,
                 {"A_DECLINED": 0.2803, "W_Valideren aanvraag": 0.2058},
                 "learned from 11246 finished cases", 1)
SECOND = KeptEnds("loans", ("A_DECLINED", "W_Valideren aanvraag", "A_CANCELLED"),
                  datetime(2026, 5, 4, 9, 30, tzinfo=UTC), 12000,
                  {"A_DECLINED": 0.28, "W_Valideren aanvraag": 0.2, "A_CANCELLED": 0.07},
                  "A_CANCELLED added: it ends 840 of 12000 finished cases (7%)", 2)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield fresh_database(request.getfixturevalue("postgres_url"))


def test_versions_round_trip_and_the_highest_is_current(url: str) -> None:
    """What is kept reads back as kept (activities in order, when, from how many cases, the
    shares, the reason); a change is a new version, the first stays in the history; another
    worker keeping the same version again writes nothing."""
    assert peek_end_activities(url) == {}
    tables = EndActivityTables(url)
    try:
        assert tables.current() == {}
        assert tables.keep(FIRST)
        assert tables.current() == {"loans": FIRST}
        assert tables.keep(SECOND)
        assert not tables.keep(SECOND)
        other = KeptEnds("receipt", ("T10",), AT, 1224, {"T10": 0.56}, "learned", 1)
        assert tables.keep(other)
        assert tables.current() == {"loans": SECOND, "receipt": other}
        assert tables.history("loans") == [FIRST, SECOND]
    finally:
        tables.close()
    assert peek_end_activities(url) == {"loans": SECOND, "receipt": other}


def test_doctor_reads_a_sqlite_store_without_creating_anything(tmp_path: Path) -> None:
    """Where no store exists, or it has no such table yet, the read finds nothing and creates
    no file and no table."""
    missing = tmp_path / "none.db"
    assert peek_end_activities(f"sqlite:///{missing}") == {}
    assert not missing.exists()
