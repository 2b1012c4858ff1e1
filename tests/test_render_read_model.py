"""A map drawn from a read model's figures (``MapData.of``) against the same map drawn from the
events: the same activities, paths, counts, loops and bottlenecks, on BPIC 2012 and the
simulator, for every path threshold; hiding activities is refused (only events can project)."""

from __future__ import annotations

import pytest
from conftest import event_frame
from shared_logs_support import shared_events

from ingest.simulate import simulate
from mining.errors import MiningError
from mining.read_model import ReadModel
from mining.render import MapData, MapOptions, build_map, to_dot


@pytest.mark.parametrize("source", ["bpic2012", "simulator"])
def test_the_read_model_map_is_the_events_map(source: str) -> None:
    """Every shown activity, path and count, the start and end paths, the loops and the
    bottlenecks are the events' map's, in both views and at 5%, 20% and all paths."""
    if source == "bpic2012":
        events = shared_events("bpic2012.xes.gz", "bpic2012")
    else:
        events = list(simulate("claims", 2_000, seed=5).events)
    data = MapData.of(ReadModel("bpic2012" if source == "bpic2012" else "claims").update(events)
                      .figures())
    frame = event_frame(events)
    for paths in (0.05, 0.2, 1.0):
        options = MapOptions(paths=paths)
        ours, theirs = build_map(data, options), build_map(frame, options)
        assert ours.activities == theirs.activities
        assert [(e.source, e.target, e.count) for e in ours.edges] == [
            (e.source, e.target, e.count) for e in theirs.edges]
        assert (ours.starts, ours.ends, ours.caption) == (theirs.starts, theirs.ends, theirs.caption)
        assert ours.rework == theirs.rework and ours.bottlenecks == theirs.bottlenecks
    assert ours.rework and (source == "simulator" or ours.bottlenecks)
    frequency = MapOptions(view="frequency")
    assert to_dot(data, frequency).count(" -> ") == to_dot(frame, frequency).count(" -> ")


def test_hiding_activities_is_drawn_from_the_events_only() -> None:
    """A read model's map cannot hide an activity: that is a projection of the traces."""
    data = MapData.of(ReadModel("claims").update(simulate("claims", 50, seed=1).events).figures())
    with pytest.raises(MiningError, match="drawn from the events"):
        build_map(data, MapOptions(activities=0.5))
