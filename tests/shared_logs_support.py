"""The public event logs of ../shared/data/logs, each parsed once per test session (by
Backlight's reader and by pm4py) however many modules compare against them: BPIC 2012 alone
takes seconds to read and tens of seconds for pm4py to parse."""

from __future__ import annotations

import warnings
from functools import cache

import pandas as pd
from conftest import shared_file

from ingest.logfiles import read_log
from schemas.event import CaseEvent


@cache
def _events(name: str, process: str) -> tuple[CaseEvent, ...]:
    return tuple(read_log(shared_file(f"logs/{name}"), process))


def shared_events(name: str, process: str) -> list[CaseEvent]:
    """`read_log` of the public log ``name`` for ``process`` (a fresh list of the session's
    one reading: the events are immutable), or skip the test when the file is absent."""
    return list(_events(name, process))


@cache
def _pm4py_xes(name: str) -> pd.DataFrame:
    import pm4py

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame: pd.DataFrame = pm4py.read_xes(str(shared_file(f"logs/{name}")),
                                             return_legacy_log_object=False)
    return frame


def pm4py_xes(name: str) -> pd.DataFrame:
    """`pm4py.read_xes` of the public XES log ``name`` (a copy of the session's one parse,
    the caller's to change), or skip the test when the file is absent."""
    return _pm4py_xes(name).copy()
