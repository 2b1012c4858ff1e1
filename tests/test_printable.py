"""Control characters in event text are data, never terminal commands: ``printable`` and the
outputs that use it (alert text on the terminal, CLI errors, JSON on the terminal, web pages)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import click
import pytest
from chat_support import make_alert, make_notification
from click.testing import CliRunner

from backlight.alerting import EvaluationReport
from backlight.cli_alerts import _alert_line
from backlight.cli_options import errors_exit
from backlight.render_alerts import render_text
from backlight.web.pages import TEMPLATES
from schemas.alerts import AlertChange, Change
from schemas.errors import BacklightError
from schemas.printable import json_printable, printable

HOSTILE = "c-1\x1b[31m\x07\x1b]0;pwned\x07\x7f\x9b2J\u202eevil"
SHOWN = "c-1\\x1b[31m\\x07\\x1b]0;pwned\\x07\\x7f\\x9b2J\\u202eevil"
CONTROLS = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), "\u202e"}


def raw_controls(text: str) -> set[str]:
    """The raw control characters in a text, line breaks aside."""
    return {c for c in text if c in CONTROLS and c != "\n"}


def test_printable_shows_every_control_as_an_escape() -> None:
    """C0, DEL, C1 and bidirectional overrides become visible escapes; other text is unchanged."""
    assert printable(HOSTILE) == SHOWN
    assert printable("\x00\t\n\r") == "\\x00\\x09\\x0a\\x0d"
    assert all(len(printable(c)) > 1 for c in CONTROLS)
    for text in ("Verify identity", "Prüfung — 確認 😀", "a\\x1b", ""):
        assert printable(text) == text


def test_json_printable_keeps_the_json_value() -> None:
    """JSON text keeps its value (the same after json.loads) but carries no raw DEL, C1 or
    bidi override, which json.dumps(ensure_ascii=False) leaves in."""
    doc = {"case": HOSTILE, "é": ["😀", "\x85"]}
    text = json_printable(json.dumps(doc, indent=2, ensure_ascii=False))
    assert json.loads(text) == doc
    assert not raw_controls(text) and "é" in text and "😀" in text


def test_alert_text_on_the_terminal_escapes_event_text() -> None:
    """`alerts evaluate` text: process, summary, cases and keys from events are escaped."""
    alert = dataclasses.replace(make_alert(subject=HOSTILE, summary=f"wait before {HOSTILE}"),
                                cases=(HOSTILE,), process=f"claims{HOSTILE}")
    note = make_notification([alert])
    report = EvaluationReport(datetime(2026, 11, 2, tzinfo=UTC), (), (alert,),
                              (AlertChange(Change.FIRING, alert, note.created_at),), (note,))
    text = render_text(report)
    assert not raw_controls(text)
    assert f"cases: {SHOWN}" in text and f"wait before {SHOWN}" in text
    line = _alert_line(alert)  # `alerts list`
    assert not raw_controls(line) and SHOWN in line


def test_cli_errors_escape_what_they_quote() -> None:
    """An error message quoting event text reaches stderr with its controls escaped."""
    @click.command()
    @errors_exit
    def fail() -> None:
        raise BacklightError(f"no process named {HOSTILE!s}")

    result = CliRunner().invoke(fail)
    assert result.exit_code == 1
    assert result.output == f"backlight: no process named {SHOWN}\n"


@pytest.mark.parametrize("template", ["<p>{{ name }}</p>", '<a title="{{ name }}">x</a>'])
def test_pages_show_control_characters_as_escapes(template: str) -> None:
    """Every {{ value }} of a page shows controls as escapes (autoescape alone leaves them raw),
    and markup in the value is still HTML-escaped."""
    page = TEMPLATES.env.from_string(template).render(name=f"<b>{HOSTILE}</b>")
    assert not raw_controls(page)
    assert f"&lt;b&gt;{SHOWN}&lt;/b&gt;" in page
