"""Log lines on the operator's terminal: event data in them never acts on the terminal."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from backlight import logs


@pytest.fixture()
def restore_logging() -> Iterator[None]:
    """The root logger's handlers and level as they were before the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:], root.level = handlers, level


def test_control_characters_in_logged_event_data_are_escaped(
        capsys: pytest.CaptureFixture[str], restore_logging: object) -> None:
    """An activity holding an escape sequence and a bell, logged as a field or in the message,
    reaches stderr as a quoted, escaped value: no raw control character, the text still
    readable, plain values still unquoted."""
    logs.setup("INFO")
    logging.getLogger("backlight.test").info("learned Check\x1b[31m", extra={"fields": {
        "end_activities": "B,Check\x1b[31m\x07", "process": "claims"}})
    line = capsys.readouterr().err.strip()
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line), repr(line)
    assert 'end_activities="B,Check\\u001b[31m\\u0007"' in line
    assert 'event="learned Check\\u001b[31m"' in line and " process=claims" in line


def test_json_log_lines_hold_no_raw_control_characters(
        capsys: pytest.CaptureFixture[str], restore_logging: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With BACKLIGHT_LOG_FORMAT=json each line is one JSON object whose strings carry the
    control characters as escapes (the value itself unchanged once parsed)."""
    monkeypatch.setenv("BACKLIGHT_LOG_FORMAT", "json")
    logs.setup("INFO")
    logging.getLogger("backlight.test").warning("x", extra={"fields": {"case": "c\x1b\x9b1"}})
    line = capsys.readouterr().err.strip()
    assert line.isprintable(), repr(line)
    assert json.loads(line)["case"] == "c\x1b\x9b1"
