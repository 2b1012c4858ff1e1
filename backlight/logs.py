"""Structured logs: one line per event, ``key=value`` pairs (or JSON with BACKLIGHT_LOG_FORMAT=json).

Code logs through structlog's bound loggers (``structlog.stdlib.get_logger("backlight.<area>")``,
``log.info("event text", key=value)``); structlog hands each event to the standard library's
logging, where one ``structlog.stdlib.ProcessorFormatter`` renders it, and also the records of
libraries logging the standard way (kafka-python, httpx, librdkafka): one processor chain, one
line format for both. A line is ``ts=... level=... logger=... event=...`` then the event's own
fields, in the order they were given; an exception is rendered into an ``error`` field.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_FIRST = ("ts", "level", "logger", "event")
"""The keys every line starts with, in this order."""
_configured = False


def _exc_info_now(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``exc_info=True`` (``log.exception``) as the exception being handled, taken while it is."""
    if event_dict.get("exc_info") is True:
        event_dict["exc_info"] = sys.exc_info()
    return event_dict


def _timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``ts``: the local time the record was made, to the second."""
    event_dict["ts"] = time.strftime(_TIME_FORMAT, time.localtime(event_dict["_record"].created))
    return event_dict


def _level(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``level``: the record's level in lower case (``exception`` is ``error``)."""
    event_dict["level"] = event_dict["_record"].levelname.lower()
    return event_dict


def _logger_name(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``logger``: the name of the logger the event was logged on."""
    event_dict["logger"] = event_dict["_record"].name
    return event_dict


def _error(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``error``: the traceback of the event's exception (``exc_info``), if it has one."""
    exc_info = event_dict.pop("exc_info", None)
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        event_dict["error"] = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    return event_dict


def _in_order(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The fixed keys first, then the event's own; structlog's and logging's bookkeeping gone."""
    rest = {k: v for k, v in event_dict.items()
            if k not in _FIRST and k not in ("_record", "_from_structlog")}
    return {**{k: event_dict[k] for k in _FIRST}, **rest}


def _quote(value: Any) -> str:
    """A value as it is written after ``key=``: quoted (JSON string rules, ASCII only) when it
    holds a space, ``=``, a quote, or any character a terminal would act on (event data such as
    an activity named ``"Check\x1b[31m"`` reaches log lines), else as it is."""
    text = str(value)
    if " " in text or "=" in text or '"' in text or not text or not text.isprintable():
        return json.dumps(text)
    return text


def _key_values(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    """The line for people: ``key=value`` pairs separated by spaces, values quoted as needed."""
    return " ".join(f"{k}={_quote(v)}" for k, v in event_dict.items())


def formatter(as_json: bool) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter of every log record, Backlight's (structlog) and libraries' (logging)."""
    renderer: Processor = structlog.processors.JSONRenderer(default=str) if as_json else _key_values
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[],
        processors=[_timestamp, _level, _logger_name, _error, _in_order, renderer])


def configure() -> None:
    """Route structlog's loggers to the standard library's logging (its levels, its handlers,
    pytest's ``caplog``). Called by ``setup``; the tests call it alone. The chain is the same on
    every call (the list is kept: loggers cache it, ``structlog.testing.capture_logs`` edits it)."""
    global _configured
    if _configured:
        return
    _configured = True
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, _exc_info_now,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True)


def setup(level: str = "INFO") -> None:
    """Send Backlight's logs to stderr; kafka-python's and httpx's own only from WARNING up."""
    configure()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(os.environ.get("BACKLIGHT_LOG_FORMAT") == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # kafka-python's own event loop reports its slow tasks on a busy machine: nothing to act on
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs each request's URL (a secret)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
