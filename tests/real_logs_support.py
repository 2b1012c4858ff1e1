"""The public real logs (../shared/data) as the store hands them to the rules."""

from __future__ import annotations

from functools import cache

import polars as pl
from conftest import event_frame, shared_file

from ingest.logfiles import read_log

LOGS = {"loans": "logs/bpic2012.xes.gz", "helpdesk": "logs/helpdesk.xes.gz",
        "fines": "logs/roadtraffic100traces.xes", "receipt": "logs/receipt.csv"}
"""Each log under the process name the issue's replay gave it."""


@cache
def real(process: str) -> pl.DataFrame:
    """A public log as an event frame (skips the test where ../shared is absent)."""
    return event_frame(list(read_log(shared_file(LOGS[process]), process)))
