"""Benchmark (on demand: python3 -m pytest -m bench -s tests/test_bench_alert_history.py): what
an alert round costs as the history grows, reading the bounded history (``[alerts] history``,
alerts/reach.py) against the whole of it, side by side.

Stores of BPIC 2012 as "loans", 2, 4 and 8 times over (524k, 1.05M and 2.1M events; each copy's
cases renamed and shifted by 183 days, so the history grows from one year to four). On each,
`backlight alerts evaluate --dry-run` at an hour after the last event, once with the default
history (365 days) and once with 3,650 days (the whole store: what every round read before),
each in its own process: wall time and peak resident memory. The issue's targets: a round at
most 2 s per process and at most 1.3x its 1M-event time at 5M; the worker at most 500 MiB.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_support import bpic_copies, evaluate
from conftest import shared_file

from schemas.event import from_time_us

pytestmark = pytest.mark.bench
SIZES = (2, 4, 8)
ENDS = ("A_DECLINED", "A_CANCELLED", "A_REGISTERED")


def test_an_alert_round_costs_its_history_not_the_store(tmp_path: Path) -> None:
    """Round time and memory at 0.5M, 1M and 2M events, bounded history against the whole."""
    print()
    rows = []
    for copies in SIZES:
        path = tmp_path / f"store-{copies}.db"
        events = bpic_copies(path, shared_file("logs/bpic2012.xes.gz"), copies, 183)
        moment = from_time_us(max(e.time_us for e in events) + 3_600_000_000)
        assert moment is not None
        results = {}
        for history in ("365 days", "3650 days"):
            config = tmp_path / f"{copies}-{history.split()[0]}.toml"
            config.write_text(
                f'[store]\nurl = "sqlite:///{path}"\n\n[alerts]\nhistory = "{history}"\n\n'
                f'[[processes]]\nname = "loans"\nowner = "ann@example.com"\n'
                f'end_activities = {list(ENDS)!r}\n'.replace("'", '"'))
            runs = [evaluate(config, moment.isoformat()) for _ in range(2)]
            results[history] = (min(r[0] for r in runs), max(r[1] for r in runs))
        rows.append((len(events), results))
        (bounded_s, bounded_mib), (whole_s, whole_mib) = results["365 days"], results["3650 days"]
        print(f"{len(events):>9,} events: bounded {bounded_s:5.1f} s {bounded_mib:5.0f} MiB;"
              f" whole {whole_s:5.1f} s {whole_mib:5.0f} MiB; ratio {bounded_s / whole_s:.2f}x")
        path.unlink()
    bounded = [r["365 days"][0] for _, r in rows]
    print(f"bounded round, 2M against 1M events: {bounded[2] / bounded[1]:.2f}x (target at most 1.3x)")
    assert bounded[2] < rows[2][1]["3650 days"][0]
