"""Write a process's events as an XES log (IEEE 1849), readable by pm4py, ProM, Disco, Celonis.

XES is XML 1.0, which cannot carry most control characters even as character references: text
goes through ``printable`` (ESC becomes the four characters ``\x1b``) before it is quoted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TextIO
from xml.sax.saxutils import quoteattr as _quoteattr

import polars as pl

from mining.frame import NOT_XML, EventsLike, prepare
from schemas.printable import printable

_NOT_XML = re.compile(NOT_XML)
_TIME = "%Y-%m-%dT%H:%M:%S%.6f+00:00"
"""XES times in UTC with microseconds, formatted by polars: no row becomes a Python datetime,
so no stored time can overflow the export."""

_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1849-2016" xes.features="" xmlns="http://www.xes-standard.org/">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
  <extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
  <extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
  <string key="concept:name" value={process}/>
"""


def _attr(text: str) -> str:
    """An XML attribute value: control characters as visible escapes, then quoted; the
    non-characters U+FFFE and U+FFFF (not XML either) as U+FFFD."""
    return _quoteattr(_NOT_XML.sub("\ufffd", printable(text)))


def _lines(df: pl.DataFrame) -> Iterator[str]:
    case: str | None = None
    for case_id, activity, ts, lifecycle, resource, team in df.select(
        "case_id", "activity", pl.col("timestamp").dt.to_string(_TIME), "lifecycle", "resource",
        "team").iter_rows():
        if case_id != case:
            if case is not None:
                yield "  </trace>\n"
            yield f'  <trace>\n    <string key="concept:name" value={_attr(case_id)}/>\n'
            case = case_id
        yield (f'    <event>\n      <string key="concept:name" value={_attr(activity)}/>\n'
               f'      <date key="time:timestamp" value="{ts}"/>\n'
               f'      <string key="lifecycle:transition" value="{lifecycle}"/>\n')
        if resource is not None:
            yield f'      <string key="org:resource" value={_attr(resource)}/>\n'
        if team is not None:
            yield f'      <string key="org:group" value={_attr(team)}/>\n'
        yield "    </event>\n"
    if case is not None:
        yield "  </trace>\n"


def write_xes(data: EventsLike, process: str, out: TextIO) -> int:
    """Write the events, one trace per case in time order; return the number of events."""
    df = prepare(data).df
    out.write(_HEAD.format(process=_attr(process)))
    for line in _lines(df):
        out.write(line)
    out.write("</log>\n")
    return df.height
