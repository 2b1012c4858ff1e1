"""Resolution means recovery: a drift that persists keeps its alert open while the baselines
slide, and an accepted level becomes the key's normal (rules + lifecycle, state kept, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from anchors_support import Along, along
from conftest import sim_frame
from detection_support import evening

from alerts.anchors import anchors_of
from alerts.context import BaselineAnchor
from alerts.lifecycle import LifecyclePolicy, advance
from alerts.registry import ProcessDefinition
from ingest.simulate import Anomalies, Bottleneck, ReworkLoop, StuckCases
from schemas.alerts import Acceptance, Alert, Change, Finding, Severity, Status

REQUEST, RECEIVED = "Request missing documents", "Documents received"
CLAIMS_ONSET = datetime(2026, 2, 16, 9, tzinfo=UTC)  # the demo's drift_onset(2000)
CLAIMS_ROUNDS = [datetime(2026, 3, 6, 18, tzinfo=UTC) + timedelta(days=7 * i) for i in range(8)] + [
    datetime(2026, 4, 27, 18, tzinfo=UTC)]
REPEATED = f"rework/claims/repeated request: {REQUEST}"


@dataclass
class Run:
    """A period evaluated round by round with the state kept, and that state as it was just
    before the round at which the owner accepts."""

    kept: Along
    seen: list[dict[str, Alert]]
    before_accept: Along


def _run(frame: pl.DataFrame, process: str, rounds: list[datetime], accept_at: int) -> Run:
    """Every round with the state kept; a copy of the state before round ``accept_at``."""
    kept = Along(ProcessDefinition(process), frame)
    seen: list[dict[str, Alert]] = []
    snapshot = kept
    for i, now in enumerate(rounds):
        if i == accept_at:
            snapshot = Along(kept.definition, frame, alerts=dict(kept.alerts),
                             changes=list(kept.changes))
        seen.append(dict(kept.round(now)))
    return Run(kept, seen, snapshot)


CLAIMS_ACCEPT = 2  # 20 March


@pytest.fixture(scope="module")
def claims() -> tuple[pl.DataFrame, Run]:
    """The demo's claims: 2000 cases (seed 7), asked twice for documents from 16 February,
    evaluated weekly with the state kept."""
    frame, _ = sim_frame("claims", 2000, 7, Anomalies(
        rework=ReworkLoop((REQUEST, RECEIVED), since=CLAIMS_ONSET), stuck=StuckCases("Assessment")))
    return frame, _run(frame, "claims", CLAIMS_ROUNDS, CLAIMS_ACCEPT)


def test_the_claims_repeated_requests_stay_open_while_the_share_stays_up(
        claims: tuple[pl.DataFrame, Run]) -> None:
    """Evaluated weekly with the state kept, the repeated documents request fires on 6 March at
    the latest and is still firing on 17 and 27 April; without the frozen baseline it resolved
    by 17 April (what the demo's store showed)."""
    frame, run = claims
    by_day = {now.date().isoformat(): alerts
              for now, alerts in zip(CLAIMS_ROUNDS, run.seen, strict=True)}
    for day in ("2026-03-13", "2026-03-20", "2026-04-03", "2026-04-17", "2026-04-27"):
        assert by_day[day][REPEATED].status is Status.FIRING, day
    assert not [c for c in run.kept.changes if c.change is Change.RESOLVED]
    until = run.kept.alerts[REPEATED].baseline_until
    assert until is not None and until.date() <= CLAIMS_ONSET.date() + timedelta(days=3)
    _, slid = along(frame, "claims", CLAIMS_ROUNDS, stateless=True)
    assert slid[-1][REPEATED].closed  # resolved, even "confirmed", while the share stays up


def test_the_claims_level_accepted_resolves_once_and_stays_quiet(
        claims: tuple[pl.DataFrame, Run]) -> None:
    """Accepted as normal on 20 March, the repeated request resolves at that round with one
    ACCEPTED change, and nothing about it fires again to the end of the period (evaluated
    every other week from there, the state kept)."""
    kept = claims[1].before_accept
    assert kept.alerts[REPEATED].status is Status.FIRING
    accepted_at = CLAIMS_ROUNDS[CLAIMS_ACCEPT]
    kept.accept(REPEATED, accepted_at)
    for now in CLAIMS_ROUNDS[CLAIMS_ACCEPT::2]:
        assert kept.round(now)[REPEATED].status is Status.RESOLVED, now
    mine = [c for c in kept.changes if c.alert.key == REPEATED]
    assert [c.change for c in mine] == [Change.FIRING, Change.ACCEPTED]
    assert mine[-1].at == accepted_at and mine[-1].alert.accepted_by == "owner"
    assert anchors_of(kept.alerts.values(), kept.acceptances)[REPEATED].accepted


ONSET_DAY, END_DAY = 45, 260  # business days after 5 January 2026: past the 180-day horizon
DRIFT_RULES = ("bottleneck", "throughput", "handoff")
REDONE = "rework/onboarding/rework at Open account"
WAIT = "bottleneck/onboarding/wait before Risk review"
ROUNDS = [evening(d) for d in range(ONSET_DAY + 5, END_DAY, 15)]  # one clear round resolves
ACCEPT_AT = 2  # the round at which the wait's owner accepts its level (it fired before)


@pytest.fixture(scope="module")
def slowed() -> tuple[pl.DataFrame, Run]:
    """Onboarding over a year; from ONSET_DAY the wait before Risk review is ten times as long,
    and four in ten new cases have their account opened twice or more, to the end; evaluated
    every 15 business days with the state kept."""
    onset = evening(ONSET_DAY).replace(hour=9)
    frame, _ = sim_frame("onboarding", 40 * END_DAY, 3, Anomalies(
        bottleneck=Bottleneck("Risk review", onset, 10.0),
        rework=ReworkLoop(("Open account",), 0.4, since=onset)))
    return frame, _run(frame, "onboarding", ROUNDS, ACCEPT_AT)


def test_drifts_that_persist_stay_open_to_the_end_of_a_long_period(
        slowed: tuple[pl.DataFrame, Run]) -> None:
    """The wait, case-duration, hand-off and rework-at drifts, evaluated every 15 business days
    with the state kept, each fire and stay firing to the end, past the point where the sliding
    lookback has taken the slow level for normal: evaluated without anchors, the wait, the
    case duration and the hand-offs that fired have all closed by then."""
    frame, run = slowed
    kept, seen = run.kept, run.seen
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
    assert redone and redone == list(range(redone[0], len(ROUNDS))), redone
    slid, slid_seen = along(frame, "onboarding", [ROUNDS[ACCEPT_AT], ROUNDS[-1]], stateless=True)
    for rule in DRIFT_RULES:
        assert slid.open_keys(rule) == set() != {
            k for k, a in slid_seen[0].items() if a.rule == rule}, rule


def test_drifts_accepted_as_normal_resolve_and_stay_quiet(
        slowed: tuple[pl.DataFrame, Run]) -> None:
    """Once the wait before Risk review fires, its owner accepts the level: it resolves with one
    ACCEPTED (after firing, and firing again one severity up: one episode) and never fires
    again to the end of the period (evaluated every 30 business days from there, state kept)."""
    kept = slowed[1].before_accept
    assert kept.alerts[WAIT].status is Status.FIRING
    kept.accept(WAIT, ROUNDS[ACCEPT_AT])
    for now in ROUNDS[ACCEPT_AT::2]:
        kept.round(now)
        assert kept.alerts[WAIT].status is Status.RESOLVED, now
    mine = [c.change for c in kept.changes if c.alert.key == WAIT]
    assert mine[-1] is Change.ACCEPTED and set(mine[:-1]) == {Change.FIRING}, mine  # fired, raised


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
