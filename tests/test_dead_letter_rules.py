"""The rules of dead-lettering and of store refusals, without a broker: headers made safe to
send, truncation named by size and sha256, the store's refused rows told from the rest (on a
real SQLite store), and outages logged at most once a minute."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import structlog

from ingest.dead_letters import (
    HEADER_NAME_MAX,
    HEADER_VALUE_MAX,
    HEADERS_MAX,
    letter,
    sanitise_headers,
    truncated,
)
from ingest.errors import RowRejected, StoreError, rejects_rows
from ingest.rdkafka import Record
from ingest.retry import Retrying
from ingest.store_writes import write_batch
from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import SQLiteStore

log = structlog.stdlib.get_logger("test.dead_letter_rules")


def ev(i: int, activity: str | None = "A", resource: str | None = "u-1",
       time_us: int = 1_770_000_000_000_000) -> CaseEvent:
    return CaseEvent(f"e{i}", "claims", f"c{i % 3}", activity, time_us + i, "complete",  # type: ignore[arg-type]
                     resource, None, None)


def test_null_header_values_become_empty_and_names_become_text() -> None:
    """A null header value becomes b"", bytes and non-text names become text, str values bytes."""
    assert sanitise_headers([("h", None), (b"raw\xff", b"v"), (7, "text"), ("x", bytearray(b"b"))]
                            ) == [("h", b""), ("raw\ufffd", b"v"), ("7", b"text"), ("x", b"b")]


def test_header_names_values_and_count_are_capped() -> None:
    """Names are cut to 256 bytes (a character cut in two dropped), values to 8 KiB, and at
    most 64 of the source's headers are kept."""
    long_name = "é" * HEADER_NAME_MAX  # 2 bytes each
    out = sanitise_headers([(long_name, b"v" * (HEADER_VALUE_MAX + 10))] * (HEADERS_MAX + 5))
    assert len(out) == HEADERS_MAX
    name, value = out[0]
    assert name == "é" * (HEADER_NAME_MAX // 2) and len(name.encode()) == HEADER_NAME_MAX
    assert value == b"v" * HEADER_VALUE_MAX


def test_a_dead_letter_keeps_the_message_and_says_why_and_where() -> None:
    """The letter is the message's value and key in <topic>.dlq, its sanitised headers first,
    then the reason, the code and the source coordinates."""
    msg = Record("claims.events", 2, 41, b"k", b"{bad", (("trace", None),))
    out = letter(msg, "invalid_json", "invalid_json: not JSON")
    assert (out.topic, out.value, out.key) == ("claims.events.dlq", b"{bad", b"k")
    assert dict(out.all_headers()) == {
        "trace": b"", "backlight.error": b"invalid_json: not JSON",
        "backlight.error.code": b"invalid_json", "backlight.source.topic": b"claims.events",
        "backlight.source.partition": b"2", "backlight.source.offset": b"41"}


def test_a_truncated_letter_names_the_original_by_size_and_sha256() -> None:
    """Cut to n bytes, the letter says truncated=true with the original's size and sha256;
    stripped, it also loses the source's headers but never Backlight's."""
    value = bytes(range(256)) * 40
    whole = letter(Record("t", 0, 5, None, value, (("h", b"1"),)), "too_large", "too_large: x")
    cut = truncated(whole, 100)
    headers = dict(cut.all_headers())
    assert cut.value == value[:100]
    assert headers["backlight.truncated"] == b"true"
    assert headers["backlight.original.size"] == str(len(value)).encode()
    assert headers["backlight.original.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["h"] == b"1" and headers["backlight.source.offset"] == b"5"
    bare = dict(truncated(whole, 0, strip=True).all_headers())
    assert "h" not in bare and bare["backlight.error.code"] == b"too_large"


def test_row_content_errors_are_told_from_transient_ones() -> None:
    """A refused value (SQLite's NOT NULL, an unencodable or too large value) is a row's
    fault; a locked or unreachable database is transient."""
    import sqlite3

    assert rejects_rows(sqlite3.IntegrityError("NOT NULL constraint failed: events.activity"))
    assert rejects_rows(sqlite3.DataError("string or blob too big"))
    assert rejects_rows(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    assert rejects_rows(OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert not rejects_rows(sqlite3.OperationalError("database is locked"))
    assert not rejects_rows(ConnectionError("gone"))


def test_the_rows_sqlite_refuses_are_set_aside_and_the_rest_stored(tmp_path: Path) -> None:
    """A batch of 200 with three rows SQLite refuses (no activity, a lone surrogate, an
    integer beyond 64 bits): those three are returned with the database's reason, the other
    197 are stored once and reported new, in order."""
    store = SQLiteStore(tmp_path / "s.db")
    batch = [ev(i) for i in range(200)]
    batch[17] = ev(17, activity=None)
    batch[101] = ev(101, resource="u\ud800")
    batch[199] = ev(199, time_us=2**70)
    origins = [Coordinates("t", 0, i) for i in range(200)]
    with pytest.raises(RowRejected):
        store.write(batch, origins)
    written = write_batch(store, batch, origins, threading.Event(), log, waits=(0.0,))
    assert written is not None
    assert [r.index for r in written.refused] == [17, 101, 199]
    assert "NOT NULL constraint failed: events.activity" in written.refused[0].reason
    assert "cannot encode" in written.refused[1].reason
    assert "INTEGER" in written.refused[2].reason
    assert written.new == [i not in (17, 101, 199) for i in range(200)]
    assert [(c.events) for c in store.counts()] == [197]
    store.close()


def test_a_transient_store_error_is_retried_and_logged_once_a_minute(
        tmp_path: Path) -> None:
    """With the events table away, the write is retried without end (logged once, with the
    attempt count); with it back, the batch is stored; stopped meanwhile, None."""
    import sqlite3

    store = SQLiteStore(tmp_path / "s.db")
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    db.execute("ALTER TABLE events RENAME TO away")
    tries = {"n": 0}
    real_write = store.write

    def write(events: list[CaseEvent], origins: list[Coordinates | None]) -> list[bool]:
        tries["n"] += 1
        if tries["n"] == 6:
            db.execute("ALTER TABLE away RENAME TO events")
        return real_write(events, origins)

    store.write = write  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logged:
        written = write_batch(store, [ev(1), ev(2)], [None, None], threading.Event(), log,
                              waits=(0.0,))
    assert written is not None and written.new == [True, True]
    failures = [e for e in logged if e["event"] == "storing the batch failed; trying again"]
    assert len(failures) == 1 and tries["n"] == 6
    assert failures[0]["attempts"] == 1 and failures[0]["log_level"] == "warning"
    [recovered] = [e for e in logged if e["event"] == "storing the batch succeeded again"]
    assert recovered["attempts"] == 5
    db.execute("ALTER TABLE events RENAME TO away")
    stop = threading.Event()
    stop.set()
    assert write_batch(store, [ev(3)], [None], stop, log, waits=(0.0,)) is None
    db.close()
    store.close()


def test_retrying_logs_again_only_after_a_minute() -> None:
    """100 failures in a row: one warning (the next would come a minute after the first)."""
    retrying = Retrying("dead-lettering the batch", threading.Event(), log, waits=(0.0,))
    with structlog.testing.capture_logs() as logged:
        for _ in range(100):
            assert retrying.failed(StoreError("down"))
    assert len(logged) == 1 and retrying.attempts == 100
