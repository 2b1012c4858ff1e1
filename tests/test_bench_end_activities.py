"""Benchmark (on demand: python -m pytest -m bench -s tests/test_bench_end_activities.py): the
learned end activities and the stuck rule on the public real logs (../shared/data), in rounds
every 7 days (every 91 for the 100 road-traffic fines) from 8 weeks after the first event, the
end activities kept as ``alerts evaluate`` keeps them. Prints per process: the distinct sets of
end activities used, the kept set and its versions, the stuck and abandoned case-listings, and
those at a declined or cancelled outcome (must be none)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from real_logs_support import real

from alerts.context import RuleContext
from alerts.ends import decide, learn
from alerts.registry import ProcessDefinition
from alerts.rules.stuck import ABANDONED, stuck
from mining.frame import prepare
from storage.end_activities import KeptEnds

OUTCOMES = frozenset({"A_DECLINED", "A_CANCELLED", "O_CANCELLED", "O_DECLINED"})


@pytest.mark.bench
@pytest.mark.parametrize("process", ["loans", "receipt", "helpdesk", "fines"])
def test_rounds_on_a_real_log(process: str) -> None:
    """No stuck listing at a declined or cancelled outcome; one kept set changed only with a
    reason; the figures printed."""
    frame = real(process)
    start, end = frame["timestamp"].min(), frame["timestamp"].max()
    step = timedelta(days=91 if process == "fines" else 7)
    now = start + timedelta(weeks=8)  # type: ignore[operator]
    kept: KeptEnds | None = None
    versions: list[KeptEnds] = []
    used, rounds, listed, at_outcome, abandoned = set(), 0, 0, 0, 0
    while now <= end + timedelta(days=1):  # type: ignore[operator]
        events = prepare(frame.filter(pl.col("timestamp") <= now))
        learning = learn(events, now)
        change = decide(process, kept, learning)
        if change is not None:
            kept = change
            versions.append(change)
        ends = kept.activities if kept else learning.chosen
        used.add(tuple(sorted(ends)))
        for f in stuck(RuleContext(ProcessDefinition(process, end_activities=ends), events, now)):
            count = int(f.evidence["count"])  # type: ignore[arg-type]
            if f.subject == ABANDONED:
                abandoned += count
                continue
            listed += count
            at_outcome += count if f.evidence["step"] in OUTCOMES else 0
        rounds += 1
        now += step
    print(f"\n{process}: {rounds} rounds, {len(used)} distinct end-activity sets, stuck "
          f"case-listings {listed} ({listed / rounds:.0f} a round), at a declined/cancelled "
          f"outcome {at_outcome}, abandoned case-listings {abandoned}")
    for v in versions:
        print(f"  v{v.version} {v.learned_at.date()}: {', '.join(v.activities)} ({v.reason})")
    assert at_outcome == 0
    assert all(v.reason for v in versions)
