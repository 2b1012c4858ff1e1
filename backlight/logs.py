"""Structured logs: one line per event, ``key=value`` pairs (or JSON with BACKLIGHT_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
            "logger": record.name, "event": record.getMessage(),
        }
        fields.update(getattr(record, "fields", {}))
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(fields, default=str)
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


def _quote(value: Any) -> str:
    """A value as it is written after ``key=``: quoted (JSON string rules, ASCII only) when it
    holds a space, ``=``, a quote, or any character a terminal would act on (event data such as
    an activity named ``"Check\x1b[31m"`` reaches log lines), else as it is."""
    text = str(value)
    if " " in text or "=" in text or '"' in text or not text or not text.isprintable():
        return json.dumps(text)
    return text


def setup(level: str = "INFO") -> None:
    """Send Backlight's logs to stderr; kafka-python's and httpx's own only from WARNING up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(os.environ.get("BACKLIGHT_LOG_FORMAT") == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # kafka-python's own event loop reports its slow tasks on a busy machine: nothing to act on
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs each request's URL (a secret)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
