"""Read an existing event log file (XES, XES.gz, CSV, Parquet) as Backlight case events.

`backlight replay FILE --process NAME` publishes what `read_log` yields. XES is streamed with
lxml's iterparse and every element is dropped once read, so memory stays bounded by the largest
event (plus one trace's events when a trace names its case only after them). CSV and Parquet
are read with polars, in the pm4py column convention (``case:concept:name``, ``concept:name``,
``time:timestamp``, ...) or the Backlight one (``case_id``, ``activity``, ``timestamp``, ...).

Event ids are ``{process}:{case_id}:{n}``, n counting a case's events from 0 in file order, so
reading the same file twice gives the same ids and a replay published twice is stored once.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from lxml import etree  # type: ignore[import-untyped]

from ingest.errors import LogFileError
from schemas.event import LIFECYCLES, CaseEvent, to_time_us

FORMATS = (".xes", ".xes.gz", ".csv", ".parquet")
_SUPPORTED = "supported formats: " + ", ".join(FORMATS)

# Case-event field -> the columns that may hold it (pm4py convention first, then Backlight's).
_COLUMNS: dict[str, tuple[str, str]] = {
    "case_id": ("case:concept:name", "case_id"),
    "activity": ("concept:name", "activity"),
    "timestamp": ("time:timestamp", "timestamp"),
    "lifecycle": ("lifecycle:transition", "lifecycle"),
    "resource": ("org:resource", "resource"),
    "team": ("org:group", "team"),
}
_REQUIRED = ("case_id", "activity", "timestamp")
_XES_TYPES = frozenset({"string", "date", "int", "float", "boolean", "id"})
_XES_NAMESPACE = "{http://www.xes-standard.org/}"
# Tag -> attribute type for the usual tags (a dict lookup, cheaper than splitting the tag).
_XES_TAGS = {tag: kind for kind in _XES_TYPES for tag in (kind, _XES_NAMESPACE + kind)}

# activity, timestamp text, lifecycle, resource, team, other attributes, position, source line
_RawEvent = tuple[str | None, str | None, str, str | None, str | None, dict[str, Any], int, int]


def read_log(path: str | Path, process: str) -> Iterator[CaseEvent]:
    """The case events of the log file at `path`, in file order, for `process`.

    The file's existence and format are checked at once; anything wrong inside the file raises
    `LogFileError` (naming the file and where: XES line, case and event position; CSV line,
    counting the header as line 1 and one row per line; Parquet row from 1) while iterating.
    CSV and Parquet files are loaded whole by polars (columnar, compact); XES is streamed.
    """
    source = Path(path)
    name = source.name.lower()
    fmt = next((suffix for suffix in FORMATS if name.endswith(suffix)), None)
    if not source.is_file():
        raise LogFileError(f"{source}: no such log file ({_SUPPORTED})")
    if fmt is None:
        raise LogFileError(f"{source}: unknown log format ({_SUPPORTED})")
    if fmt in (".xes", ".xes.gz"):
        return _read_xes(source, process, gzipped=fmt == ".xes.gz")
    return _read_table(source, process, csv=fmt == ".csv")


def _read_xes(path: Path, process: str, *, gzipped: bool) -> Iterator[CaseEvent]:
    counts: dict[str, int] = {}
    with gzip.open(path, "rb") if gzipped else path.open("rb") as stream:
        parsed = etree.iterparse(stream, events=("end",), tag=("{*}event", "{*}trace"),
                                 resolve_entities=False, no_network=True)
        trace: Any = None  # lxml hands back the same proxy for a node while we hold it
        case_id: str | None = None
        position = 0
        pending: list[_RawEvent] = []  # events read before their trace's concept:name
        try:
            for _, element in parsed:
                if _local(element.tag) == "trace":
                    if pending:
                        case_id = _attribute(element, "concept:name")
                        if case_id is None:
                            raise LogFileError(
                                f"{path}, line {element.sourceline}: trace has no concept:name"
                            )
                        for raw in pending:
                            yield _xes_event(path, process, case_id, raw, counts)
                    trace, case_id, position, pending = None, None, 0, []
                    _drop(element)
                    continue
                parent = element.getparent()
                if parent is not trace:
                    if _local(parent.tag) != "trace":
                        raise LogFileError(
                            f"{path}, line {element.sourceline}: event outside a trace"
                        )
                    trace, case_id, position = parent, None, 0
                position += 1
                pending.append(_xes_fields(element, position))
                if case_id is None:  # usually the trace's first child, before its events
                    case_id = _attribute(trace, "concept:name")
                _drop(element)
                if case_id is not None:
                    for raw in pending:
                        yield _xes_event(path, process, case_id, raw, counts)
                    pending = []
        except etree.XMLSyntaxError as exc:
            raise LogFileError(f"{path}: not well-formed XES: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise LogFileError(f"{path}: cannot read: {exc}") from exc


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _drop(element: Any) -> None:
    """Free a parsed element and everything before it (iterparse keeps them otherwise)."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _attribute(element: Any, key: str) -> str | None:
    for child in element:
        if child.get("key") == key and _local(child.tag) in _XES_TYPES:
            value: str | None = child.get("value")
            return value
    return None


def _xes_fields(element: Any, position: int) -> _RawEvent:
    activity = stamp = resource = team = None
    lifecycle = "complete"
    attributes: dict[str, Any] = {}
    for child in element:  # direct children only: nested attributes and lists are ignored
        kind = _XES_TAGS.get(child.tag) or _local(child.tag)
        key, value = child.get("key"), child.get("value")
        if kind not in _XES_TYPES or key is None or value is None:
            continue
        if key == "concept:name":
            activity = value
        elif key == "time:timestamp":
            stamp = value
        elif key == "org:resource":
            resource = value
        elif key == "org:group":
            team = value
        elif key == "lifecycle:transition" and value.lower() in LIFECYCLES:
            lifecycle = value.lower()
        else:  # includes a lifecycle:transition outside start|complete|schedule, kept as is
            attributes[key] = _typed(kind, value)
    return activity, stamp, lifecycle, resource, team, attributes, position, element.sourceline


def _typed(kind: str, value: str) -> Any:
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            number = float(value)
            return number if math.isfinite(number) else None
        if kind == "date":
            return datetime.fromisoformat(value).isoformat()
    except ValueError:
        return value
    if kind == "boolean":
        return value.strip().lower() == "true"
    return value


def _xes_event(
    path: Path, process: str, case_id: str, raw: _RawEvent, counts: dict[str, int]
) -> CaseEvent:
    activity, stamp, lifecycle, resource, team, attributes, position, line = raw
    where = f"{path}, line {line}: case {case_id!r}, event {position}"
    if activity is None:
        raise LogFileError(f"{where}: no concept:name (activity)")
    if stamp is None:
        raise LogFileError(f"{where}: no time:timestamp")
    return _event(process, case_id, activity, _time_us(stamp, where), lifecycle,
                  resource, team, attributes, counts)


def _read_table(path: Path, process: str, *, csv: bool) -> Iterator[CaseEvent]:
    counts: dict[str, int] = {}
    kind = "CSV" if csv else "Parquet"
    try:
        if csv:
            mapped = _map_columns(path, pl.read_csv(path, n_rows=0).columns, "line 1 (header)")
            overrides = {column: pl.String for column in mapped.values()}
            frame = pl.read_csv(path, schema_overrides=overrides, infer_schema_length=None)
        else:
            frame = pl.read_parquet(path)
            mapped = _map_columns(path, frame.columns, "columns")
            frame = frame.with_columns(
                pl.col(column).cast(pl.String)
                for field, column in mapped.items() if field != "timestamp"
            )
    except pl.exceptions.PolarsError as exc:
        raise LogFileError(f"{path}: cannot read as {kind}: {exc}") from exc
    except OSError as exc:
        raise LogFileError(f"{path}: cannot read: {exc}") from exc
    index = {name: i for i, name in enumerate(frame.columns)}
    fields = [index.get(mapped.get(field, ""), -1) for field in _COLUMNS]
    used = set(mapped.values())
    others = [(name, i) for name, i in index.items()
              if name not in used and not name.startswith("case:")]
    for number, row in enumerate(frame.iter_rows(), start=2 if csv else 1):
        where = f"{path}, {'line' if csv else 'row'} {number}"
        values: list[Any] = [None if i < 0 else row[i] for i in fields]
        case_id, activity, stamp, lifecycle, resource, team = values
        for field, value in zip(_REQUIRED, (case_id, activity, stamp), strict=True):
            if value is None:
                raise LogFileError(f"{where}: no {field} (column {mapped[field]!r} is empty)")
        attributes = {name: _plain(row[i]) for name, i in others}
        if lifecycle is None or lifecycle.lower() in LIFECYCLES:
            lifecycle = (lifecycle or "complete").lower()
        else:
            attributes["lifecycle:transition"] = lifecycle
            lifecycle = "complete"
        yield _event(process, case_id, activity, _time_us(stamp, where), lifecycle,
                     resource, team, attributes, counts)


def _map_columns(path: Path, header: Iterable[str], where: str) -> dict[str, str]:
    """Case-event field -> the column holding it (the first accepted name present)."""
    present = set(header)
    mapped = {field: next(name for name in names if name in present)
              for field, names in _COLUMNS.items() if present.intersection(names)}
    for field in _REQUIRED:
        if field not in mapped:
            accepted = " or ".join(repr(name) for name in _COLUMNS[field])
            raise LogFileError(f"{path}, {where}: no {field} column (expected {accepted})")
    return mapped


def _plain(value: Any) -> Any:
    """A table cell as a JSON value; None (omitted) for nulls and NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, date):  # datetime is a date too
        return value.isoformat()
    return value


def _time_us(value: Any, where: str) -> int:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise LogFileError(f"{where}: timestamp {value!r} is not ISO 8601") from None
    if not isinstance(value, datetime):
        raise LogFileError(f"{where}: timestamp {value!r} is not a date and time")
    if value.utcoffset() is None:
        raise LogFileError(f"{where}: timestamp {value.isoformat()!r} has no UTC offset")
    return to_time_us(value)


def _event(
    process: str, case_id: str, activity: str, time_us: int, lifecycle: str,
    resource: str | None, team: str | None, attributes: dict[str, Any], counts: dict[str, int],
) -> CaseEvent:
    n = counts.get(case_id, 0)
    counts[case_id] = n + 1
    kept = {key: value for key, value in attributes.items() if value is not None}
    canonical = (json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
                 if kept else None)
    return CaseEvent(f"{process}:{case_id}:{n}", process, case_id, activity, time_us,
                     lifecycle, resource, team, canonical)
