"""Reading event log files (XES, XES.gz, CSV, Parquet) as case events: `ingest.logfiles`."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import shared_file
from shared_logs_support import pm4py_xes, shared_events

from ingest.errors import LogFileError
from ingest.logfiles import FORMATS, read_log
from schemas.event import CaseEvent


def shared_log(name: str) -> Path:
    """The public log `name` from ../shared/data/logs, or skip the test when it is absent."""
    return shared_file(f"logs/{name}")


def pm4py_rows(path: Path) -> Counter[tuple[str, str, int, str]]:
    """(case_id, activity, UTC microseconds, lifecycle) of every event, as pm4py reads the file.

    Lifecycle is lowercased, and missing or outside start|complete|schedule counts as
    "complete", which is what Backlight stores for it.
    """
    import pandas as pd
    import pm4py

    if path.suffix == ".csv":
        frame = pm4py.format_dataframe(
            pd.read_csv(path), case_id="case:concept:name", activity_key="concept:name",
            timestamp_key="time:timestamp",
        )
    else:
        frame = pm4py_xes(path.name)
    stamps = pd.to_datetime(frame["time:timestamp"], utc=True)
    micros = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")
    if "lifecycle:transition" in frame.columns:
        lifecycles = [
            value.lower() if isinstance(value, str)
            and value.lower() in ("start", "complete", "schedule") else "complete"
            for value in frame["lifecycle:transition"]
        ]
    else:
        lifecycles = ["complete"] * len(frame)
    return Counter(zip(frame["case:concept:name"].astype(str), frame["concept:name"],
                       (int(m) for m in micros), lifecycles, strict=True))


def our_rows(events: list[CaseEvent]) -> Counter[tuple[str, str, int, str]]:
    """The same projection of our events."""
    return Counter((e.case_id, e.activity, e.time_us, e.lifecycle) for e in events)


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning:pm4py.*")
@pytest.mark.parametrize(("name", "events", "cases"), [
    ("helpdesk.xes.gz", 21_348, 4_580),
    ("receipt.csv", 8_577, 1_434),
    ("running-example.xes", 42, 6),
    ("reviewing.xes", 3_730, 100),
    ("interval_event_log.xes", 8_109, 1_266),
])
def test_public_logs_match_pm4py(name: str, events: int, cases: int) -> None:
    """Each public log gives pm4py's events: same counts, cases, activities, times, lifecycles."""
    path = shared_log(name)
    ours = list(read_log(path, "p"))
    assert len(ours) == events
    assert len({e.case_id for e in ours}) == cases
    assert our_rows(ours) == pm4py_rows(path)
    assert len({e.event_id for e in ours}) == events


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning:pm4py.*")
def test_bpic2012_matches_pm4py() -> None:
    """BPIC 2012 gives pm4py's 262,200 events of 13,087 cases (speed: tests/bench_ingest.py)."""
    path = shared_log("bpic2012.xes.gz")
    ours = shared_events("bpic2012.xes.gz", "bpic2012")
    theirs = pm4py_rows(path)
    assert len(ours) == 262_200
    assert len({e.case_id for e in ours}) == 13_087
    assert Counter(e.lifecycle for e in ours) == {
        "complete": 164_506, "start": 71_376, "schedule": 26_318}
    assert our_rows(ours) == theirs


XES_EVENTS = """
  <trace>
    <string key="concept:name" value="c1"/>
    <string key="channel" value="branch"/>
    <event>
      <string key="concept:name" value="Submit"/>
      <date key="time:timestamp" value="2026-03-04T08:15:00Z"/>
      <string key="lifecycle:transition" value="START"/>
      <string key="org:resource" value="u-112"/>
      <string key="org:group" value="back-office/kyc"/>
      <int key="amount" value="20000"/>
      <float key="score" value="0.5"/>
      <boolean key="urgent" value="true"/>
      <date key="due" value="2026-03-05T09:00:00.000+01:00"/>
      <string key="note" value="parent"><string key="child" value="ignored"/></string>
      <list key="tags"><values><string key="t" value="ignored"/></values></list>
    </event>
    <event>
      <string key="concept:name" value="Submit"/>
      <date key="time:timestamp" value="2026-03-04T09:15:00.250+01:00"/>
      <string key="lifecycle:transition" value="ate_abort"/>
    </event>
  </trace>
  <trace>
    <event>
      <date key="time:timestamp" value="2026-03-04T10:00:00+00:00"/>
      <string key="concept:name" value="Verify"/>
    </event>
    <string key="concept:name" value="c2"/>
    <event>
      <date key="time:timestamp" value="2026-03-04T10:00:00+00:00"/>
      <string key="concept:name" value="Approve"/>
    </event>
  </trace>
  <trace>
    <string key="concept:name" value="c1"/>
    <event>
      <date key="time:timestamp" value="2026-03-04T11:00:00+00:00"/>
      <string key="concept:name" value="Close"/>
    </event>
  </trace>
"""

EXPECTED_XES = [
    CaseEvent("p:c1:0", "p", "c1", "Submit", 1_772_612_100_000_000, "start", "u-112",
              "back-office/kyc",
              '{"amount":20000,"due":"2026-03-05T09:00:00+01:00","note":"parent",'
              '"score":0.5,"urgent":true}'),
    CaseEvent("p:c1:1", "p", "c1", "Submit", 1_772_612_100_250_000, "complete",
              attributes='{"lifecycle:transition":"ate_abort"}'),
    CaseEvent("p:c2:0", "p", "c2", "Verify", 1_772_618_400_000_000),
    CaseEvent("p:c2:1", "p", "c2", "Approve", 1_772_618_400_000_000),
    CaseEvent("p:c1:2", "p", "c1", "Close", 1_772_622_000_000_000),
]


def write_xes(folder: Path, body: str, *, namespace: bool) -> Path:
    """A small XES file, with or without the XES namespace declared."""
    xmlns = ' xmlns="http://www.xes-standard.org/"' if namespace else ""
    path = folder / "small.xes"
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<log{xmlns}>\n'
                    f'<string key="concept:name" value="log-level, not an event"/>\n'
                    f"{body}</log>\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("namespace", [False, True], ids=["no-namespace", "xes-namespace"])
def test_small_xes_maps_every_field(tmp_path: Path, namespace: bool) -> None:
    """XES with/without xmlns: fields, typed attributes, odd lifecycle, late or repeated names."""
    assert list(read_log(write_xes(tmp_path, XES_EVENTS, namespace=namespace), "p")) \
        == EXPECTED_XES


@pytest.mark.parametrize(("remove", "message"), [
    ('<date key="time:timestamp" value="2026-03-04T09:15:00.250+01:00"/>',
     r"small\.xes, line \d+: case 'c1', event 2: no time:timestamp"),
    ('<string key="concept:name" value="Submit"/>',
     r"small\.xes, line \d+: case 'c1', event 1: no concept:name"),
    ('<string key="concept:name" value="c2"/>', r"small\.xes, line \d+: trace has no concept:name"),
], ids=["no-timestamp", "no-activity", "no-case"])
def test_incomplete_xes_event_is_refused(tmp_path: Path, remove: str, message: str) -> None:
    """An XES event lacking its time, activity or case raises, saying where (not skipped)."""
    path = write_xes(tmp_path, XES_EVENTS.replace(remove, "", 1), namespace=True)
    with pytest.raises(LogFileError, match=message):
        list(read_log(path, "p"))


def test_event_ids_are_deterministic_and_count_per_case(tmp_path: Path) -> None:
    """Two reads give the same ids, numbered per case in file order even when cases interleave."""
    path = tmp_path / "log.csv"
    path.write_text("case_id,activity,timestamp\n"
                    "a,Submit,2026-03-04T08:00:00+00:00\n"
                    "b,Submit,2026-03-04T08:01:00+00:00\n"
                    "a,Verify,2026-03-04T08:02:00+00:00\n", encoding="utf-8")
    first = [e.event_id for e in read_log(path, "onboarding")]
    assert first == ["onboarding:a:0", "onboarding:b:0", "onboarding:a:1"]
    assert [e.event_id for e in read_log(path, "onboarding")] == first


def test_parquet_round_trip(tmp_path: Path) -> None:
    """Events written to Parquet (Backlight columns) read back as the same events."""
    events = [
        CaseEvent("p:7:0", "p", "7", "Submit", 1_772_612_100_123_456, "schedule", "u-1",
                  "kyc", '{"amount":20000,"channel":"branch"}'),
        CaseEvent("p:7:1", "p", "7", "Verify", 1_772_615_700_000_000),
    ]
    rows: list[dict[str, Any]] = [
        {"case_id": e.case_id, "activity": e.activity,
         "timestamp": datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=e.time_us),
         "lifecycle": e.lifecycle, "resource": e.resource, "team": e.team,
         "case:origin": "ignored", **json.loads(e.attributes or "{}")}
        for e in events
    ]
    path = tmp_path / "log.parquet"
    pl.DataFrame(rows).write_parquet(path)
    assert list(read_log(path, "p")) == events


def test_csv_timestamps_with_offsets_are_utc(tmp_path: Path) -> None:
    """pm4py-style CSV columns map to fields; offsets are honoured; case: columns are dropped."""
    path = tmp_path / "log.csv"
    path.write_text("case:concept:name,concept:name,time:timestamp,org:resource,case:x,note\n"
                    "007,Submit,2011-10-11 13:45:40.276000+02:00,42,dropped,\n", encoding="utf-8")
    (event,) = read_log(path, "p")
    moment = datetime(2011, 10, 11, 13, 45, 40, 276000, tzinfo=timezone(timedelta(hours=2)))
    assert event.timestamp == moment
    assert (event.case_id, event.resource, event.attributes) == ("007", "42", None)


def test_csv_naive_timestamp_names_the_line(tmp_path: Path) -> None:
    """A CSV timestamp without a UTC offset raises LogFileError naming the file and line."""
    path = tmp_path / "naive.csv"
    path.write_text("case_id,activity,timestamp\n"
                    "a,Submit,2026-03-04T08:00:00+00:00\n"
                    "a,Verify,2026-03-04 09:00:00\n", encoding="utf-8")
    with pytest.raises(LogFileError, match=r"naive\.csv, line 3: .* has no UTC offset"):
        list(read_log(path, "p"))


def test_csv_without_a_required_column_is_refused(tmp_path: Path) -> None:
    """A CSV with no timestamp column raises LogFileError naming the accepted column names."""
    path = tmp_path / "log.csv"
    path.write_text("case_id,activity\na,Submit\n", encoding="utf-8")
    with pytest.raises(LogFileError, match=r"no timestamp column .*'time:timestamp'"):
        list(read_log(path, "p"))


def test_missing_file_lists_supported_formats(tmp_path: Path) -> None:
    """A file that does not exist raises LogFileError at once, listing the supported formats."""
    with pytest.raises(LogFileError, match="no such log file") as caught:
        read_log(tmp_path / "absent.xes", "p")
    assert all(suffix in str(caught.value) for suffix in FORMATS)


def test_unknown_suffix_lists_supported_formats(tmp_path: Path) -> None:
    """A file with an unsupported suffix raises LogFileError at once, listing the formats."""
    path = tmp_path / "log.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(LogFileError, match="unknown log format") as caught:
        read_log(path, "p")
    assert all(suffix in str(caught.value) for suffix in FORMATS)
