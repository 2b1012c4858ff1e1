"""Out-of-range event times and non-finite numbers on the read side, as pure logic: which events
count, conversions that never raise, strict JSON, XML-safe exports."""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from backlight import strict_json
from backlight.web.app import StrictJSONResponse
from mining.export import write_xes
from mining.frame import SCHEMA
from mining.summary import summarize
from mining.timerange import MAX_FUTURE_SKEW, within_range
from schemas.event import from_time_us

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
YEAR_10000_US = 253_402_351_199_000_000  # 9999-12-31T23:59:59-14:00


def frame_at(*micros: int, activity: str = "A") -> pl.DataFrame:
    """One case with an event at each time (microseconds since the epoch)."""
    n = len(micros)
    return pl.DataFrame({
        "event_id": [str(i) for i in range(n)], "case_id": ["c"] * n, "activity": [activity] * n,
        "timestamp": pl.Series(list(micros), dtype=pl.Int64).cast(SCHEMA["timestamp"]),
        "lifecycle": ["complete"] * n, "resource": [None] * n, "team": [None] * n,
        "attributes": [None] * n, "seq": list(range(n)),
    }, schema=SCHEMA)


def us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_times_from_1970_to_now_plus_the_skew_count_and_no_others() -> None:
    """Both ends count; a microsecond outside either, year 1 and year 10000 do not."""
    edge = us(NOW + MAX_FUTURE_SKEW)
    kept = within_range(frame_at(0, us(NOW), edge, -1, edge + 1, -62_135_596_800_000_000,
                                 YEAR_10000_US), NOW)
    assert kept.out_of_range == 4
    assert kept.frame["timestamp"].dt.epoch("us").to_list() == [0, us(NOW), edge]


def test_a_frame_of_usable_times_is_passed_through_unchanged() -> None:
    """Nothing is copied or counted when every time is usable."""
    frame = frame_at(us(NOW), us(NOW) + 1)
    kept = within_range(frame, NOW)
    assert kept.out_of_range == 0 and kept.frame is frame


def test_from_us_never_raises() -> None:
    """Times Python cannot hold become None; others the exact UTC datetime."""
    assert from_time_us(YEAR_10000_US) is None
    assert from_time_us(-(10**18)) is None
    assert from_time_us(us(NOW)) == NOW


def test_the_summary_of_year_10000_events_does_not_raise() -> None:
    """`summarize` called on raw events (no range check) still answers; its window end, which
    no datetime can hold, is null."""
    doc = summarize(frame_at(us(NOW), YEAR_10000_US), "p")
    assert doc["events"] == 2
    assert doc["window"] == {"from": NOW.isoformat(), "to": None}


def test_xes_export_of_hostile_events_is_well_formed_xml() -> None:
    """Control characters are shown as visible escapes and a year-10000 time is written, not
    raised on."""
    buffer = io.StringIO()
    write_xes(frame_at(us(NOW), YEAR_10000_US, activity="Check\x1b[31m\x07\x00"), "p\x07", buffer)
    root = ET.fromstring(buffer.getvalue().encode())
    names = [e.get("value") for e in root.iter() if e.get("key") == "concept:name"]
    assert "Check\\x1b[31m\\x07\\x00" in names and "p\\x07" in names
    times = [e.get("value") for e in root.iter() if e.get("key") == "time:timestamp"]
    assert times == ["2026-06-01T12:00:00.000000+00:00", "+10000-01-01T13:59:59.000000+00:00"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_become_null_at_any_depth(value: float) -> None:
    """`strict_json.dumps` writes null where Python's json would write NaN or Infinity."""
    text = strict_json.dumps({"a": [1.5, value, {"b": (value, 2)}], "c": value})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "a": [1.5, None, {"b": [None, 2]}], "c": None}


def test_the_api_response_class_sends_null_for_non_finite_numbers() -> None:
    """The web app's JSON responses are strict JSON whatever a figure's value."""
    body = StrictJSONResponse({"share": math.nan, "rows": [math.inf, 0.25]}).body
    assert json.loads(bytes(body), parse_constant=lambda c: pytest.fail(c)) == {
        "share": None, "rows": [None, 0.25]}
