"""XES export: what Backlight writes, pm4py and our own reader read back unchanged."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.logfiles import read_log
from mining.export import write_xes
from mining.frame import frame_from_rows

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
NASTY = '<script>alert("x")</script> & \'quotes\''


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_xes_round_trips_through_pm4py_and_our_reader(tmp_path: Path) -> None:
    """Cases, activities (even with markup in them), times, lifecycles and resources survive."""
    import pm4py

    rows = [{"event_id": f"e{i}", "case_id": f"c{i % 3}", "activity": [NASTY, "B", "C"][i % 3],
             "lifecycle": ["start", "complete"][i % 2], "resource": f"u{i}", "team": "t&t",
             "timestamp": T0 + timedelta(minutes=i, microseconds=7), "seq": i} for i in range(12)]
    path = tmp_path / "out.xes"
    with path.open("w") as out:
        assert write_xes(frame_from_rows(rows), "claims & co", out) == 12
    ours = Counter((e.case_id, e.activity, e.timestamp, e.lifecycle, e.resource, e.team)
                   for e in read_log(path, "claims"))
    assert ours == Counter((r["case_id"], r["activity"], r["timestamp"], r["lifecycle"],
                            r["resource"], r["team"]) for r in rows)
    theirs = pm4py.read_xes(str(path), return_legacy_log_object=False)
    assert len(theirs) == 12 and set(theirs["concept:name"]) == {NASTY, "B", "C"}
