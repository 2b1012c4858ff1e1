"""Service time vs waiting time from start/complete events, equal to pm4py's service time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from shared_logs_support import shared_events

from mining.frame import frame_from_rows
from mining.service import service_times

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def frame(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    """(case, activity, lifecycle, minute) rows in arrival order."""
    return frame_from_rows([
        {"event_id": f"e{i}", "case_id": c, "activity": a, "lifecycle": lc,
         "timestamp": T0 + timedelta(minutes=m), "seq": i}
        for i, (c, a, lc, m) in enumerate(rows)])


def test_service_and_waiting_split() -> None:
    """Start->complete is service; previous completion->start is waiting."""
    df = frame([("c1", "Check", "start", 0), ("c1", "Check", "complete", 10),
                ("c1", "Approve", "start", 40), ("c1", "Approve", "complete", 45),
                ("c2", "Check", "start", 0), ("c2", "Check", "complete", 30)])
    got = {s.activity: s for s in service_times(df)}
    assert got["Check"].instances == 2 and got["Check"].service.mean == 20 * 60
    assert got["Approve"].service.mean == 5 * 60
    assert got["Approve"].waiting.mean == 30 * 60
    assert got["Check"].waiting.max == 0  # first steps of their cases wait for nothing


def test_fifo_pairing_and_instant_completes() -> None:
    """Completes close the earliest open start; a complete without a start takes no time."""
    df = frame([("c1", "Review", "start", 0), ("c1", "Review", "start", 5),
                ("c1", "Review", "complete", 20), ("c1", "Review", "complete", 30),
                ("c1", "Notify", "complete", 31)])
    got = {s.activity: s for s in service_times(df)}
    assert got["Review"].service.mean == (20 * 60 + 25 * 60) / 2
    assert (got["Notify"].with_start, got["Notify"].service.max) == (0, 0)


def test_no_start_events_gives_nothing() -> None:
    """A log with only complete events has no service times to report."""
    assert service_times(frame([("c1", "A", "complete", 0), ("c1", "B", "complete", 1)])) == []


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bpic2012_service_time_matches_pm4py() -> None:
    """On BPIC 2012's start/complete events (first 2,000 cases), mean and median service time
    per activity equal pm4py's to_interval + get_service_time."""
    import pm4py
    from pm4py.objects.log.util import interval_lifecycle

    events = shared_events("bpic2012.xes.gz", "bpic2012")
    keep = list(dict.fromkeys(e.case_id for e in events))[:2000]
    chosen = set(keep)
    df = frame_from_rows([
        {"event_id": e.event_id, "case_id": e.case_id, "activity": e.activity,
         "lifecycle": e.lifecycle, "timestamp": e.timestamp, "seq": i}
        for i, e in enumerate(events) if e.case_id in chosen])
    ours = {s.activity: s for s in service_times(df)}
    pdf = df.sort("case_id", "timestamp", "seq").select(
        pl.col("case_id").alias("case:concept:name"), pl.col("activity").alias("concept:name"),
        pl.col("lifecycle").alias("lifecycle:transition"),
        pl.col("timestamp").alias("time:timestamp")).to_pandas()
    interval = interval_lifecycle.to_interval(pm4py.convert_to_event_log(pdf))
    for measure in ("mean", "median"):
        theirs = pm4py.get_service_time(interval, aggregation_measure=measure,
                                        start_timestamp_key="start_timestamp")
        assert set(theirs) == set(ours)
        for activity, seconds in theirs.items():
            assert getattr(ours[activity].service, measure) == pytest.approx(seconds, abs=1e-3)
