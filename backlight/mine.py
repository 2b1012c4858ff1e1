"""``backlight mine``: one process from the store, as JSON, an SVG map, BPMN or XES."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from backlight import strict_json
from backlight.config import ConfigError, Settings
from mining.timerange import OUT_OF_RANGE, InRange, within_range
from schemas.printable import json_printable
from storage import mask_url, open_store

# Each format imports its own part of the mining core when it runs: `mine --format json` never
# loads the SVG renderer or pm4py's wrapper.

Format = Literal["json", "svg", "bpmn", "xes"]


@dataclass(frozen=True)
class Mined:
    """What `mine` produced: the document, and notes for the person running it."""

    text: str
    notes: tuple[str, ...] = ()


def load_events(settings: Settings, process: str) -> pl.DataFrame:
    """The process's events from the store (all of them, whatever their time); a clear error
    when it has none."""
    store = open_store(settings.store.url, settings.store.session())
    try:
        frame = store.events(process)
        if frame.is_empty():
            known = ", ".join(c.process for c in store.counts()) or "none yet"
            raise ConfigError(f"--process {process!r}: the store ({mask_url(settings.store.url)}) has no "
                              f"events of it; processes with events: {known}")
        return frame
    finally:
        store.close()


def usable(process: str, frame: pl.DataFrame) -> InRange:
    """The events with a time in range (``mining.timerange``); a clear error when none is."""
    kept = within_range(frame)
    if kept.frame.is_empty() and kept.out_of_range:
        raise ConfigError(f"--process {process!r}: every one of its {kept.out_of_range} event(s) "
                          f"has a time {OUT_OF_RANGE}")
    return kept


def out_of_range_note(process: str, count: int) -> tuple[str, ...]:
    """What `mine` says on stderr about the events it left out for their time."""
    if not count:
        return ()
    return (f"{count} event(s) of {process!r} left out: their time is {OUT_OF_RANGE} (stored "
            "before decode refused such times)",)


def _with_comment(xml: str, lines: tuple[str, ...]) -> str:
    """The XML with a comment after its declaration saying what the model leaves out.
    Activity names are event data: "--" cannot stand in an XML comment, so it is broken up."""
    text = "\n".join("  " + line.replace("--", "- -") for line in lines).replace("-->", "- ->")
    comment = f"<!-- Backlight discovered this model from the store.\n{text}\n-->\n"
    head, sep, rest = xml.partition("?>")
    return f"{head}{sep}\n{comment}{rest.lstrip()}" if sep else comment + xml


def conformance(settings: Settings, process: str, frame: pl.DataFrame,
                lifecycle: str | None) -> dict[str, Any] | None:
    """Fitness against the process's documented model, when the config names one."""
    proc = next((p for p in settings.processes if p.name == process), None)
    if proc is None or proc.reference_model is None:
        return None
    from mining.model import check_conformance

    result = check_conformance(frame, proc.reference_model, lifecycle=lifecycle)
    return {"model": proc.reference_model, "fitness": result.fitness,
            "fitting_cases": result.fitting_cases, "cases": result.cases,
            "findings": result.findings()}


def json_document(process: str, handed: list[pl.DataFrame], out_of_range: int,
                  checked: dict[str, Any] | None, lifecycle: str | None = None) -> dict[str, Any]:
    """The `mine --format json` document (the API's ``/document`` too) of the process's events,
    the one frame in ``handed``: the summary, the conformance ``checked`` against the reference
    model (``conformance``; None without one), and how many of its events were left out for
    their time. ``handed`` is emptied: a caller that keeps no other reference lets each copy go
    as soon as the next one is made."""
    from mining.summary import narrow, summarize, summary_events

    frame = handed.pop()
    # Each copy goes as soon as the next one is made: the frame read from the store once
    # the summary has its columns, those once they are sorted (BPIC 2012 peaks about
    # 40 MiB lower than with the frame kept throughout).
    narrowed = narrow(frame)
    del frame
    events = summary_events(narrowed, lifecycle)
    del narrowed
    doc = summarize(events, process, lifecycle)
    del events
    if checked is not None:
        doc["conformance"] = checked
    doc["out_of_range_events"] = out_of_range
    return doc


def bpmn_document(frame: pl.DataFrame) -> tuple[str, tuple[str, ...]]:
    """The BPMN model discovered from the events, with a comment saying what it leaves out, and
    those lines."""
    from mining.model import discover_model

    model = discover_model(frame)
    left_out = tuple(model.left_out())
    return _with_comment(model.bpmn_xml, left_out), left_out


def xes_document(frame: pl.DataFrame, process: str) -> str:
    """The events as an XES log."""
    from mining.export import write_xes

    buffer = io.StringIO()
    write_xes(frame, process, buffer)
    return buffer.getvalue()


def mine(settings: Settings, process: str, fmt: Format, *, lifecycle: str | None = None,
         view: Literal["frequency", "performance"] = "frequency", activities: float = 1.0,
         paths: float = 0.2, frame: pl.DataFrame | None = None) -> Mined:
    """Discover the process from the store (or from `frame`, its events already read) and
    render it in the asked format. Events with a time out of range are left out (a note says
    how many; the JSON has them as ``out_of_range_events``)."""
    kept = usable(process, load_events(settings, process) if frame is None else frame)
    frame, out_of_range = kept.frame, kept.out_of_range
    del kept  # the frame alone holds the events (the JSON path lets it go early)
    notes = out_of_range_note(process, out_of_range)
    if fmt == "json":
        checked = conformance(settings, process, frame, lifecycle)  # reads the whole frame
        handed = [frame]
        del frame
        doc = json_document(process, handed, out_of_range, checked, lifecycle)
        return Mined(json_printable(strict_json.dumps(doc, indent=2, ensure_ascii=False))
                     + "\n", notes)
    if fmt == "svg":
        from mining.render import MapOptions, process_map_svg

        options = MapOptions(view=view, activities=activities, paths=paths)
        return Mined(process_map_svg(frame, options, title=process), notes)
    if fmt == "bpmn":
        xml, left_out = bpmn_document(frame)
        return Mined(xml, notes + left_out)
    return Mined(xes_document(frame, process), notes)
