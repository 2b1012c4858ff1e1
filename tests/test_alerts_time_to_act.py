"""Time to act (alerts/time_to_act.py) on a scripted history with known answers (act_support)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from act_support import MON, alert, at, history, hours, states

from alerts.time_to_act import UNOWNED, episodes, quantile, report
from schemas.alerts import AlertChange, Change, Severity


def test_episodes_of_the_script() -> None:
    """Four episodes: A, B's first, B's return (the first marked recurred), C."""
    found = episodes(history())
    assert [(e.key.split("/")[-1], e.recurred) for e in found] == [
        ("B", True), ("A", False), ("C", False), ("B", False)]
    assert [e.owner for e in found] == ["ops", "ana", UNOWNED, UNOWNED]
    first_b = found[0]
    assert (first_b.acknowledged_at, first_b.resolved_at) == (at(0, 10), at(0, 17))
    assert found[3].fired_at == at(2) and found[3].acknowledged_at is None


def test_overall_figures_in_business_hours() -> None:
    """Acknowledged after 2 and 2 business hours (A: Mon 9->11; B: Fri 16->17 plus Mon 9->10);
    resolved after 12 (A: Mon 8 h + Tue 4 h) and 9 (B: 1 h + 8 h): median 10.5, p90 11.7;
    A confirmed after 40; one of the two resolved episodes recurred; two never acknowledged."""
    figures = report(episodes(history()), hours).overall
    assert figures.episodes == 4
    assert (figures.acknowledge.count, figures.acknowledge.median, figures.acknowledge.p90) == (
        2, 2.0, 2.0)
    assert figures.resolve.count == 2
    assert figures.resolve.median == pytest.approx(10.5)
    assert figures.resolve.p90 == pytest.approx(11.7)
    assert (figures.confirm.count, figures.confirm.median) == (1, pytest.approx(40.0))
    assert (figures.recurred, figures.resolved, figures.recurred_share) == (1, 2, 0.5)
    assert figures.never_acknowledged == 2


def test_per_process_and_per_owner() -> None:
    """Claims has A and both B episodes, payments C; owners are the fix owner (ops for B, not
    bo who acknowledged it), the acknowledger (ana), or unowned."""
    result = report(episodes(history()), hours)
    assert list(result.processes) == ["claims", "payments"]
    assert result.processes["claims"].episodes == 3
    assert result.processes["payments"].never_acknowledged == 1
    assert result.processes["payments"].acknowledge.median is None
    assert {name: f.episodes for name, f in result.owners.items()} == {
        "ana": 1, "ops": 1, UNOWNED: 2}
    assert result.owners["ops"].resolve.median == pytest.approx(9.0)
    data = result.to_json()
    assert data["unit"] == "business hours"
    assert data["owners"]["ana"]["confirm"] == {"count": 1, "median_hours": 40.0,
                                                "p90_hours": 40.0}


def test_an_acknowledgement_only_in_the_stored_state_counts() -> None:
    """An alert acknowledged while silenced sends no ACKNOWLEDGED change: the stored state's
    acknowledgement still counts for its open episode (C taken on by cy Tue 12:00: 3 hours)."""
    current = states()
    c_key = "stuck/payments/C"
    current[c_key] = replace(current[c_key], acknowledged_by="cy", acknowledged_at=at(1, 12))
    found = {(e.key, e.fired_at): e for e in episodes(history(), current)}
    c = found[(c_key, at(1))]
    assert (c.owner, c.acknowledged_at) == ("cy", at(1, 12))
    assert report([c], hours).overall.acknowledge.median == pytest.approx(3.0)


def test_acknowledged_while_pending_counts_as_zero() -> None:
    """Taken on before it fired: time to acknowledge 0; a severity rise is not a new episode."""
    fired = MON + timedelta(hours=4)
    a = alert("P", "bottleneck", "claims", fired, acknowledged_by="ana", acknowledged_at=MON)
    a = replace(a, first_seen=MON - timedelta(hours=1))
    changes = [AlertChange(Change.FIRING, a, fired),
               AlertChange(Change.FIRING, replace(a, severity=Severity.CRITICAL), at(1))]
    found = episodes(changes)
    assert len(found) == 1
    assert report(found, hours).overall.acknowledge.median == 0.0


def test_quantiles_interpolate_between_ranks() -> None:
    """Median and p90 as numpy's default linear interpolation: of 1..10, 5.5 and 9.1."""
    values = [float(v) for v in range(10, 0, -1)]
    assert quantile(values, 0.5) == pytest.approx(5.5)
    assert quantile(values, 0.9) == pytest.approx(9.1)
    assert quantile([], 0.5) is None


def test_a_window_counts_only_the_episodes_that_fired_in_it() -> None:
    """Since Sunday: B's first episode (fired the Friday before) is not counted, whether its
    changes are read or not; A (acknowledged in 2 h, resolved in 12 h), C and B's return are,
    and the report says since when."""
    since = at(-1)
    for changes in (history(), [c for c in history() if c.at >= since]):
        found = report(episodes(changes, states()), hours, since, timedelta(days=90))
        assert found.overall.episodes == 3
        assert (found.overall.resolve.count, found.overall.resolve.median) == (1, 12.0)
        assert found.overall.acknowledge.median == 2.0
        assert found.overall.recurred == 0
        assert "ops" not in found.owners
        assert found.to_json()["window"] == {"days": 90.0, "since": since.isoformat()}
    assert report(episodes(history()), hours).to_json()["window"] is None
