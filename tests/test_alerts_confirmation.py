"""Closing the loop in the lifecycle: who owns the fix, resolution confirmed after it held,
a condition that comes back reopening its episode as recurred."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from alerts.calendar import WorkCalendar
from alerts.confirmation import baseline_text, confirmation_text, raised
from alerts.duration import Duration
from alerts.lifecycle import LifecyclePolicy, advance, with_acks_and_silences
from alerts.routing import RouteSettings, targets
from schemas.alerts import (
    Acknowledgement,
    Alert,
    AlertChange,
    Change,
    Finding,
    Severity,
    Silence,
    Status,
)

FRI = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)  # a Friday
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
UTC_CAL = WorkCalendar(timezone="UTC")
EVIDENCE = {"recent": {"median_days": 3.2, "p90_days": 6.0, "cases": 40},
            "baseline": {"median_days": 0.8, "p90_days": 1.1, "cases": 120}}


def finding(severity: Severity = Severity.WARNING, opens: bool = True) -> Finding:
    """A wait-drift finding as the rule returns it."""
    return Finding(rule="bottleneck", process="claims", subject="waits before Risk review",
                   severity=severity, summary="Waits before Risk review up 3x",
                   evidence=EVIDENCE, opens=opens)


KEY = finding().key


@dataclass
class Runner:
    """Drives advance() round after round in a UTC working calendar, keeping the state."""

    policy: LifecyclePolicy = field(default_factory=lambda: LifecyclePolicy(resolve_after=DAY))
    state: dict[str, Alert] = field(default_factory=dict)
    sent: list[AlertChange] = field(default_factory=list)
    acks: dict[str, Acknowledgement] = field(default_factory=dict)
    silences: list[Silence] = field(default_factory=list)

    def round(self, now: datetime, findings: Sequence[Finding]) -> list[Change]:
        result = advance(self.state, findings, now=now, policy=self.policy,
                         owners={"claims": "claims-lead"}, evaluated={"claims"},
                         silences=self.silences, acks=self.acks, calendars={"claims": UTC_CAL})
        self.state = {a.key: a for a in result.alerts}
        self.sent.extend(result.changes)
        return [c.change for c in result.changes]

    def last(self, kind: Change) -> AlertChange:
        return [c for c in self.sent if c.change is kind][-1]


def fired_acked_resolved(run: Runner) -> datetime:
    """Fires Monday 2 March, acknowledged by ann for clm-ops on Tuesday, clear from Thursday 5:
    resolved on Friday 6 March at noon; returns that moment."""
    start = FRI - 4 * DAY
    run.round(start, [finding()])
    run.acks[KEY] = Acknowledgement(KEY, "ann", start + DAY, owner="clm-ops",
                                    action="second assessor on Risk review")
    run.round(start + DAY + HOUR, [finding()])
    run.round(FRI - DAY, [finding()])
    assert run.round(FRI, []) == [Change.RESOLVED]
    return FRI


def test_an_acknowledgement_names_the_fix_owner_and_action_and_acknowledged_carries_them() -> None:
    """ACKNOWLEDGED is sent once with the named owner and action; without an owner, whoever
    acknowledged owns the fix; both stay on the alert until it resolves."""
    run = Runner()
    fired_acked_resolved(run)
    acked = run.last(Change.ACKNOWLEDGED).alert
    assert (acked.acknowledged_by, acked.fix_owner, acked.action) == (
        "ann", "clm-ops", "second assessor on Risk review")
    assert [c.change for c in run.sent].count(Change.ACKNOWLEDGED) == 1
    assert run.state[KEY].fix_owner == "clm-ops"
    assert run.state[KEY].to_json()["action"] == "second assessor on Risk review"
    plain = with_acks_and_silences(acked, {KEY: Acknowledgement(KEY, "bob", acked.first_seen)}, ())
    assert (plain.fix_owner, plain.action) == ("bob", None)


def test_a_resolution_is_confirmed_after_five_business_days_and_sent_once() -> None:
    """Resolved on a Friday: not confirmed on Thursday (four business days), confirmed on the
    next Friday, once, with a sentence of what held, and sent to the escalation route too."""
    run = Runner()
    resolved = fired_acked_resolved(run)
    assert run.round(resolved + 6 * DAY, []) == []
    assert run.state[KEY].status is Status.RESOLVED
    assert run.round(resolved + 7 * DAY, []) == [Change.CONFIRMED]
    assert run.round(resolved + 8 * DAY, []) == []
    alert = run.state[KEY]
    assert alert.status is Status.CONFIRMED and alert.confirmed_at == resolved + 7 * DAY
    confirmed = run.last(Change.CONFIRMED)
    assert confirmed.detail == ("waits before Risk review: back to 0.8-1.1 business days since"
                                " 6 March 2026, 3 business days after clm-ops took it on"
                                " (action: second assessor on Risk review)")
    routes = (RouteSettings(channels=("ops",)),
              RouteSettings(channels=("management",), escalation=True))
    assert targets(confirmed, routes, {}) == ["ops", "management"]
    assert targets(run.last(Change.RESOLVED), routes, {}) == ["ops"]


def test_a_finding_above_the_clearing_threshold_restarts_the_confirmation_count() -> None:
    """A non-opening finding after the resolution neither reopens the alert nor lets it be
    confirmed: the five business days count from the last one."""
    run = Runner()
    resolved = fired_acked_resolved(run)
    assert run.round(resolved + 3 * DAY, [finding(opens=False)]) == []
    assert run.state[KEY].status is Status.RESOLVED
    assert run.round(resolved + 7 * DAY, []) == []
    assert run.round(resolved + 10 * DAY, []) == [Change.CONFIRMED]


def test_confirm_after_in_wall_time_and_an_unannounced_episode_is_confirmed_quietly() -> None:
    """confirm_after may be wall time; an episode never announced (silenced throughout) is
    confirmed without a message, as it resolved without one."""
    run = Runner(LifecyclePolicy(resolve_after=DAY, confirm_after=Duration(2, "days")))
    run.silences.append(Silence("s", FRI + 30 * DAY, "bob", "known", FRI - 9 * DAY, key=KEY))
    run.round(FRI - 4 * DAY, [finding()])
    run.round(FRI, [])
    assert run.round(FRI + DAY, []) == []
    assert run.round(FRI + 2 * DAY, []) == []
    assert run.state[KEY].status is Status.CONFIRMED
    assert run.sent == []


def test_a_return_within_the_window_reopens_the_episode_as_recurred_one_step_up() -> None:
    """The condition back three weeks after the resolution (confirmed meanwhile): one RECURRED
    (not FIRING), linked to the first episode's dates, owner and action, its severity one step
    up and kept up while it lasts; the old acknowledgement no longer counts."""
    run = Runner()
    resolved = fired_acked_resolved(run)
    run.round(resolved + 7 * DAY, [])
    back = resolved + 21 * DAY
    assert run.round(back, [finding()]) == [Change.RECURRED]
    alert = run.state[KEY]
    assert (alert.status, alert.severity, alert.recurrences) == (
        Status.FIRING, Severity.CRITICAL, 1)
    assert alert.previous == {
        "first_seen": (FRI - 4 * DAY).isoformat(), "resolved_at": resolved.isoformat(),
        "confirmed_at": (resolved + 7 * DAY).isoformat(), "fix_owner": "clm-ops",
        "action": "second assessor on Risk review"}
    assert alert.first_seen == alert.fired_at == back
    assert not alert.acknowledged and alert.fix_owner is None
    assert run.round(back + DAY, [finding()]) == []
    assert run.state[KEY].severity is Severity.CRITICAL
    assert run.state[KEY].to_json()["recurrences"] == 1


def test_a_return_after_the_window_is_a_new_episode() -> None:
    """Back 31 days after the resolution: a plain FIRING at the finding's own severity."""
    run = Runner()
    resolved = fired_acked_resolved(run)
    assert run.round(resolved + 31 * DAY, [finding()]) == [Change.FIRING]
    alert = run.state[KEY]
    assert (alert.severity, alert.recurrences, alert.previous) == (Severity.WARNING, 0, None)


def test_severity_rises_a_step_per_recurrence_capped_at_critical() -> None:
    """One step per recurrence, never past critical."""
    assert [raised(Severity.INFO, n) for n in range(4)] == [
        Severity.INFO, Severity.WARNING, Severity.CRITICAL, Severity.CRITICAL]


def test_the_confirmation_says_only_what_is_known() -> None:
    """Without a baseline figure or an acknowledgement, the sentence says so instead of
    inventing figures; a baseline share is given as a percentage."""
    alert = Alert(key=KEY, rule="bottleneck", process="claims", subject="Assessment",
                  severity=Severity.WARNING, status=Status.RESOLVED, summary="s",
                  evidence={"ratio": 3.0}, segment={}, since=None, cases=(), owner=None,
                  first_seen=FRI - DAY, last_seen=FRI - DAY, resolved_at=FRI)
    assert confirmation_text(alert, UTC_CAL) == (
        "Assessment: clear since 6 March 2026 (no baseline figure to compare with);"
        " nobody acknowledged it")
    assert baseline_text({"baseline_share": 0.046}) == "4.6% of cases"
    assert baseline_text({"baseline": {"median_days": 2.0, "p90_days": 2.0}}) == "2 business days"
