"""Resolution means recovery: a drift that persists keeps its alert open while the baselines
slide, and an accepted level becomes the key's normal (rules + lifecycle, state kept, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from anchors_support import along
from conftest import sim_frame
from detection_support import evening

from alerts.anchors import anchors_of
from alerts.context import BaselineAnchor
from alerts.lifecycle import LifecyclePolicy, advance
from ingest.simulate import Anomalies, Bottleneck, ReworkLoop, StuckCases
from schemas.alerts import Acceptance, Change, Finding, Severity, Status

REQUEST, RECEIVED = "Request missing documents", "Documents received"
CLAIMS_ONSET = datetime(2026, 2, 16, 9, tzinfo=UTC)  # the demo's drift_onset(2000)
CLAIMS_ROUNDS = [datetime(2026, 3, 6, 18, tzinfo=UTC) + timedelta(days=7 * i) for i in range(8)] + [
    datetime(2026, 4, 27, 18, tzinfo=UTC)]
REPEATED = f"rework/claims/repeated request: {REQUEST}"


@pytest.fixture(scope="module")
def claims() -> object:
    """The demo's claims: 2000 cases (seed 7), asked twice for documents from 16 February."""
    frame, _ = sim_frame("claims", 2000, 7, Anomalies(
        rework=ReworkLoop((REQUEST, RECEIVED), since=CLAIMS_ONSET), stuck=StuckCases("Assessment")))
    return frame


def test_the_claims_repeated_requests_stay_open_while_the_share_stays_up(claims: object) -> None:
    """Evaluated weekly with the state kept, the repeated documents request fires on 6 March at
    the latest and is still firing on 17 and 27 April; without the frozen baseline it resolved
    by 17 April (what the demo's store showed)."""
    kept, seen = along(claims, "claims", CLAIMS_ROUNDS)  # type: ignore[arg-type]
    by_day = {now.date().isoformat(): alerts for now, alerts in zip(CLAIMS_ROUNDS, seen, strict=True)}
    for day in ("2026-03-13", "2026-03-20", "2026-04-03", "2026-04-17", "2026-04-27"):
        assert by_day[day][REPEATED].status is Status.FIRING, day
    assert not [c for c in kept.changes if c.change is Change.RESOLVED]
    assert kept.alerts[REPEATED].baseline_until is not None
    assert kept.alerts[REPEATED].baseline_until.date() <= CLAIMS_ONSET.date() + timedelta(days=3)
    _, slid = along(claims, "claims", CLAIMS_ROUNDS, stateless=True)  # type: ignore[arg-type]
    assert slid[-1][REPEATED].closed  # resolved, even "confirmed", while the share stays up


def test_the_claims_level_accepted_resolves_once_and_stays_quiet(claims: object) -> None:
    """Accepted as normal on 20 March, the repeated request resolves at that round with one
    ACCEPTED change, and nothing about it fires again to the end of the period."""
    accepted_at = CLAIMS_ROUNDS[2]
    kept, seen = along(claims, "claims", CLAIMS_ROUNDS,  # type: ignore[arg-type]
                       accept={accepted_at: REPEATED})
    mine = [c for c in kept.changes if c.alert.key == REPEATED]
    assert [c.change for c in mine] == [Change.FIRING, Change.ACCEPTED]
    assert mine[-1].at == accepted_at and mine[-1].alert.accepted_by == "owner"
    for alerts in seen[2:]:
        assert alerts[REPEATED].status is Status.RESOLVED
    assert anchors_of(kept.alerts.values(), kept.acceptances)[REPEATED].accepted


ONSET_DAY, END_DAY = 45, 260  # business days after 5 January 2026: past the 180-day horizon
DRIFT_RULES = ("bottleneck", "throughput", "handoff")
REDONE = "rework/onboarding/rework at Open account"


@pytest.fixture(scope="module")
def slowed() -> object:
    """Onboarding over a year; from ONSET_DAY the wait before Risk review is ten times as long,
    and four in ten new cases have their account opened twice or more, to the end."""
    onset = evening(ONSET_DAY).replace(hour=9)
    frame, _ = sim_frame("onboarding", 40 * END_DAY, 3, Anomalies(
        bottleneck=Bottleneck("Risk review", onset, 10.0),
        rework=ReworkLoop(("Open account",), 0.4, since=onset)))
    return frame


def test_drifts_that_persist_stay_open_to_the_end_of_a_long_period(slowed: object) -> None:
    """The wait, case-duration, hand-off and rework-at drifts, evaluated every 10 business days
    with the state kept, each fire and stay firing to the end, past the point where the sliding
    lookback has taken the slow level for normal."""
    rounds = [evening(d) for d in range(ONSET_DAY + 5, END_DAY, 10)]  # one clear round resolves
    kept, seen = along(slowed, "onboarding", rounds)  # type: ignore[arg-type]
    for rule in DRIFT_RULES:
        fired = [i for i, alerts in enumerate(seen)
                 if any(a.rule == rule and a.status is Status.FIRING for a in alerts.values())]
        assert fired, f"{rule} never fired"
        assert kept.open_keys(rule), f"{rule} resolved before the end"
    resolved = [c.alert.key for c in kept.changes
                if c.change is Change.RESOLVED and c.alert.rule in ("bottleneck", "throughput")]
    assert not resolved
    redone = [i for i, alerts in enumerate(seen) if REDONE in alerts
              and alerts[REDONE].status is Status.FIRING]  # the activity redone more often
    assert redone and redone == list(range(redone[0], len(rounds))), redone


def test_drifts_accepted_as_normal_resolve_and_stay_quiet(slowed: object) -> None:
    """Once the wait before Risk review fires, its owner accepts the level: it resolves with one
    ACCEPTED and never fires again to the end of the period."""
    rounds = [evening(d) for d in range(ONSET_DAY + 20, END_DAY, 10)]
    key = "bottleneck/onboarding/wait before Risk review"
    kept, _ = along(slowed, "onboarding", rounds[:2])  # type: ignore[arg-type]
    assert kept.alerts[key].status is Status.FIRING
    kept.accept(key, rounds[2])
    for now in rounds[2:]:
        kept.round(now)
        assert kept.alerts[key].status is Status.RESOLVED, now
    assert [c.change for c in kept.changes if c.alert.key == key] == [Change.FIRING, Change.ACCEPTED]


def _finding(since: object = None) -> Finding:
    return Finding("rework", "p", "loop a -> b", Severity.WARNING, "s", since=since)  # type: ignore[arg-type]


def test_an_episode_keeps_the_baseline_of_its_onset() -> None:
    """The episode's baseline is frozen at its first finding's since day, whatever later
    findings say, and the evaluator hands it to the rules as a frozen anchor."""
    t0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
    first = advance({}, [_finding(t0.date() - timedelta(days=4))], now=t0,
                    policy=LifecyclePolicy(), owners={}, evaluated={"p"})
    alerts = {a.key: a for a in first.alerts}
    later = advance(alerts, [_finding(t0.date())], now=t0 + timedelta(days=7),
                    policy=LifecyclePolicy(), owners={}, evaluated={"p"})
    alert = later.alerts[0]
    assert alert.baseline_until == datetime(2026, 2, 26, tzinfo=UTC)
    assert anchors_of([alert], {}) == {alert.key: BaselineAnchor(until=t0.date() - timedelta(days=4))}


def test_an_acceptance_resolves_the_open_episode_once() -> None:
    """An acceptance given in the open, announced episode resolves it with ACCEPTED at the next
    round and never again; one given before the episode began counts for nothing."""
    t0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
    policy = LifecyclePolicy()
    opened = {a.key: a for a in advance({}, [_finding()], now=t0, policy=policy, owners={},
                                        evaluated={"p"}).alerts}
    key = next(iter(opened))
    stale = {key: Acceptance(key, "ann", t0 - timedelta(days=1), "old")}
    kept = advance(opened, [_finding()], now=t0 + timedelta(days=1), policy=policy, owners={},
                   evaluated={"p"}, acceptances=stale)
    assert kept.alerts[0].status is Status.FIRING and not kept.changes
    given = {key: Acceptance(key, "ann", t0 + timedelta(hours=1), "expected")}
    done = advance(opened, [], now=t0 + timedelta(days=1), policy=policy, owners={},
                   evaluated={"p"}, acceptances=given)
    assert [c.change for c in done.changes] == [Change.ACCEPTED]
    assert (done.alerts[0].status, done.alerts[0].accepted_by) == (Status.RESOLVED, "ann")
    again = advance({a.key: a for a in done.alerts}, [], now=t0 + timedelta(days=2),
                    policy=policy, owners={}, evaluated={"p"}, acceptances=given)
    assert not again.changes
