"""What the observer is told of a written batch (``ingest.batch_reports.batch_report``), from
the prepared batch and which of its events were new, without Kafka or a store."""

from __future__ import annotations

from collections import Counter

from ingest.batch_reports import batch_report
from ingest.decode_policy import Prepared
from ingest.rdkafka import Record
from schemas.event import CaseEvent
from schemas.frame import Coordinates

A, B = "claims.events", "orders.events"


def test_a_report_counts_per_topic_what_was_consumed_stored_replayed_and_dead_lettered() -> None:
    """Consumed counts every message (tombstones and bad ones too); stored only the new
    events, duplicates the valid events the store already had; topics with none are left out."""
    batch = [Record(A, 0, i, None, b"{}", ()) for i in range(4)] + [
        Record(B, 0, i, None, None, ()) for i in range(2)] + [Record(B, 1, 0, None, b"{}", ())]
    events = [CaseEvent(f"e{i}", "p", "c", "x", i, "complete", None, None, None)
              for i in range(4)]
    prepared = Prepared(batch, events=events,
                        origins=[Coordinates(A, 0, 0), Coordinates(A, 0, 1),
                                 Coordinates(A, 0, 2), Coordinates(B, 1, 0)],
                        bad_by_topic=Counter({(A, "invalid_json"): 1}), store_seconds=0.25)
    report = batch_report(prepared, [True, False, True, False], 1.5, {(A, 0): 3})
    assert report.consumed == {A: 4, B: 3}
    assert report.stored == {A: 2}
    assert report.duplicates == {A: 1, B: 1}
    assert report.dead_letters == {(A, "invalid_json"): 1}
    assert (report.seconds, report.store_seconds, report.lags) == (1.5, 0.25, {(A, 0): 3})
