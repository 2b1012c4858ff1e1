"""Log lines on the operator's terminal: one format for Backlight's events and the libraries'
records, event data in them never acts on the terminal."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog

from backlight import logs

log = structlog.stdlib.get_logger("backlight.test")
TS = r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"


@pytest.fixture()
def restore_logging() -> Iterator[None]:
    """The root logger's handlers and level as they were before the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:], root.level = handlers, level


def err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines written to stderr since the last read."""
    return capsys.readouterr().err.splitlines()


def test_control_characters_in_logged_event_data_are_escaped(
        capsys: pytest.CaptureFixture[str], restore_logging: object) -> None:
    """An activity holding an escape sequence and a bell, logged as a field or in the message,
    reaches stderr as a quoted, escaped value: no raw control character, the text still
    readable, plain values still unquoted."""
    logs.setup("INFO")
    log.info("learned Check\x1b[31m", end_activities="B,Check\x1b[31m\x07", process="claims")
    [line] = err_lines(capsys)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line), repr(line)
    assert 'end_activities="B,Check\\u001b[31m\\u0007"' in line
    assert 'event="learned Check\\u001b[31m"' in line and " process=claims" in line


def test_a_line_is_time_level_logger_event_then_the_fields_as_given(
        capsys: pytest.CaptureFixture[str], restore_logging: object) -> None:
    """A line starts with the time, the level, the logger's name and the event, then the fields
    in the order they were passed (bound ones first); a value is quoted only when it holds a
    space, ``=``, a quote or nothing; DEBUG is not written at INFO."""
    logs.setup("INFO")
    log.debug("not shown", n=1)
    log.bind(channel="ops").warning("notification failed", error="HTTP 503", attempt=2,
                                    reason="a=b", quote='say "hi"', empty="", ratio=0.5)
    [line] = err_lines(capsys)
    assert re.fullmatch(TS + r' level=warning logger=backlight\.test event="notification failed"'
                        r' channel=ops error="HTTP 503" attempt=2 reason="a=b"'
                        r' quote="say \\"hi\\"" empty="" ratio=0\.5', line), line


def test_an_exception_is_one_error_field(
        capsys: pytest.CaptureFixture[str], restore_logging: object) -> None:
    """``log.exception`` and ``exc_info=`` put the traceback in an ``error`` field, on the same
    single line (its newlines escaped), after the event's own fields."""
    logs.setup("INFO")
    try:
        _ = 1 / 0
    except ZeroDivisionError as exc:
        log.exception("round failed", process="claims")
        log.error("could not evaluate", exc_info=exc, summary="s")
    lines = err_lines(capsys)
    assert len(lines) == 2
    assert re.match(TS + r' level=error logger=backlight\.test event="round failed" process=claims'
                    r' error="Traceback \(most recent call last\):\\n', lines[0]), lines[0]
    assert lines[0].endswith('ZeroDivisionError: division by zero"')
    assert ' summary=s error="Traceback' in lines[1]


def test_library_records_share_the_format_and_quiet_levels(
        capsys: pytest.CaptureFixture[str], restore_logging: object) -> None:
    """A library's own standard-library record (kafka-python here) is rendered in the same
    format, its %-arguments applied; kafka-python's INFO and httpx's INFO (request URLs) are not
    written."""
    logs.setup("INFO")
    logging.getLogger("kafka.conn").warning("broker %s unreachable", "k1:9092")
    logging.getLogger("kafka.conn").info("connecting")
    logging.getLogger("httpx").info("HTTP Request: POST https://hooks.example/T0/secret")
    [line] = err_lines(capsys)
    assert re.fullmatch(TS + r' level=warning logger=kafka\.conn event="broker k1:9092 unreachable"',
                        line), line


def test_json_log_lines_hold_no_raw_control_characters(
        capsys: pytest.CaptureFixture[str], restore_logging: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With BACKLIGHT_LOG_FORMAT=json each line is one JSON object with the same keys, in the
    same order, whose strings carry the control characters as escapes (the value itself
    unchanged once parsed)."""
    monkeypatch.setenv("BACKLIGHT_LOG_FORMAT", "json")
    logs.setup("INFO")
    log.warning("x", case="c\x1b\x9b1", attempt=2)
    logging.getLogger("kafka.conn").error("broker %s gone", "k1")
    mine, library = err_lines(capsys)
    assert mine.isprintable(), repr(mine)
    parsed = json.loads(mine)
    assert list(parsed) == ["ts", "level", "logger", "event", "case", "attempt"]
    assert parsed["case"] == "c\x1b\x9b1" and parsed["attempt"] == 2
    assert parsed["level"] == "warning" and parsed["logger"] == "backlight.test"
    assert json.loads(library)["event"] == "broker k1 gone"


def test_capture_logs_sees_the_event_and_its_fields(restore_logging: object) -> None:
    """Tests read an event's fields from ``structlog.testing.capture_logs``, also on a module's
    logger that has already logged (structlog caches it) and after ``setup`` ran again: the
    event text, the level and each field as passed (not rendered)."""
    logs.setup("INFO")
    log.info("before")
    logs.setup("WARNING")
    with structlog.testing.capture_logs() as captured:
        log.warning("subscriber failed", subscriber="flaky", pending=3)
    assert captured == [{"event": "subscriber failed", "log_level": "warning",
                         "subscriber": "flaky", "pending": 3}]
