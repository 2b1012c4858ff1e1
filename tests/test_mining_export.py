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


def test_xes_with_control_characters_parses_as_xml_and_shows_them_escaped(tmp_path: Path) -> None:
    """Case ids, activities, resources, teams and the process holding ESC, BEL, NUL and C1
    controls give an XES file that parses as XML, with each control shown as its escape."""
    import xml.etree.ElementTree as ET

    text = "a\x1b[31m\x07\x00\x85"
    rows = [{"event_id": "e1", "case_id": text, "activity": text, "lifecycle": "complete",
             "resource": text, "team": text, "timestamp": T0, "seq": 1}]
    path = tmp_path / "out.xes"
    with path.open("w") as out:
        write_xes(frame_from_rows(rows), f"claims{text}", out)
    values = [e.get("value") for e in ET.parse(path).getroot().iter() if e.get("value")]
    shown = "a\\x1b[31m\\x07\\x00\\x85"
    assert values.count(shown) == 4 and f"claims{shown}" in values
