"""The alert lifecycle, evaluation by evaluation: what is sent, when, and what is kept quiet."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.lifecycle import LifecyclePolicy, advance, with_acks_and_silences
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

T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
OWNERS = {"claims": "claims-lead@example.com", "payments": "pay@example.com"}


def finding(rule: str = "bottleneck", process: str = "claims", subject: str = "Assessment",
            severity: Severity = Severity.WARNING, summary: str = "Wait before Assessment: 6 days"
            ) -> Finding:
    """A finding as a rule would return it."""
    return Finding(rule=rule, process=process, subject=subject, severity=severity,
                   summary=summary, evidence={"recent": 6.0}, cases=("c1", "c2"))


@dataclass
class Runner:
    """Drives advance() round after round, keeping the state as the evaluator would."""

    policy: LifecyclePolicy = field(default_factory=LifecyclePolicy)
    state: dict[str, Alert] = field(default_factory=dict)
    sent: list[AlertChange] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    acks: dict[str, Acknowledgement] = field(default_factory=dict)
    base_url: str | None = None

    def round(self, now: datetime, findings: Sequence[Finding],
              evaluated: Iterable[str] = ("claims",)) -> list[AlertChange]:
        """One evaluation at ``now``; returns its changes."""
        result = advance(self.state, findings, now=now, policy=self.policy, owners=OWNERS,
                         evaluated=set(evaluated), silences=self.silences, acks=self.acks,
                         base_url=self.base_url)
        self.state = {a.key: a for a in result.alerts}
        self.sent.extend(result.changes)
        return list(result.changes)

    def kinds(self) -> list[Change]:
        """The changes sent so far, in order."""
        return [c.change for c in self.sent]

    def times(self, kind: Change) -> list[datetime]:
        """When each change of one kind was sent."""
        return [c.at for c in self.sent if c.change is kind]


KEY = finding().key


def test_same_condition_over_fifty_evaluations_sends_one_firing() -> None:
    """A condition that holds at 50 hourly evaluations is announced once, at the first."""
    run = Runner()
    for i in range(50):
        run.round(T0 + i * HOUR, [finding()])
    assert run.kinds() == [Change.FIRING]
    assert run.times(Change.FIRING) == [T0]
    alert = run.state[KEY]
    assert alert.status is Status.FIRING and alert.fired_at == T0
    assert alert.first_seen == T0 and alert.last_seen == T0 + 49 * HOUR
    assert alert.owner == "claims-lead@example.com"


def test_cleared_condition_resolves_once_after_resolve_after() -> None:
    """Once clear, the alert keeps firing for resolve_after, then exactly one RESOLVED is sent."""
    run = Runner()
    for i in range(10):
        run.round(T0 + i * HOUR, [finding()])
    last_seen = T0 + 9 * HOUR
    for i in range(10, 70):
        run.round(T0 + i * HOUR, [])
        if T0 + i * HOUR < last_seen + DAY:
            assert run.state[KEY].status is Status.FIRING
    assert run.kinds() == [Change.FIRING, Change.RESOLVED]
    assert run.times(Change.RESOLVED) == [last_seen + DAY]
    resolved = run.state[KEY]
    assert resolved.status is Status.RESOLVED and resolved.resolved_at == last_seen + DAY


def test_value_oscillating_at_the_threshold_gives_no_storm() -> None:
    """Present every other evaluation for 100 evaluations (gaps shorter than resolve_after):
    one FIRING, no RESOLVED; once it stops for good, one RESOLVED."""
    run = Runner()
    for i in range(100):
        run.round(T0 + i * HOUR, [finding()] if i % 2 == 0 else [])
    assert run.kinds() == [Change.FIRING]
    for i in range(100, 150):
        run.round(T0 + i * HOUR, [])
    assert run.kinds() == [Change.FIRING, Change.RESOLVED]


def test_pending_for_is_respected_and_a_pending_alert_that_clears_is_dropped() -> None:
    """With pending_for=3h the alert fires at the evaluation 3h after it was first seen; a
    condition that clears while pending leaves nothing behind and sends nothing."""
    run = Runner(LifecyclePolicy(pending_for=3 * HOUR))
    for i in range(3):
        assert run.round(T0 + i * HOUR, [finding()]) == []
        assert run.state[KEY].status is Status.PENDING
    assert [c.change for c in run.round(T0 + 3 * HOUR, [finding()])] == [Change.FIRING]
    assert run.state[KEY].fired_at == T0 + 3 * HOUR

    blip = Runner(LifecyclePolicy(pending_for=3 * HOUR))
    for i in range(18):  # present 2 evaluations out of 3, ending absent: never 3h in a row
        blip.round(T0 + i * HOUR, [finding()] if i % 3 != 2 else [])
    assert blip.sent == []
    assert KEY not in blip.state


def test_repeat_after_repeat_interval_and_none_when_acknowledged() -> None:
    """Daily evaluations for 15 days with repeat_interval 7 days: FIRING, then REPEAT every 7
    days; an acknowledgement on day 2 stops the repeats (the channel hears ACKNOWLEDGED once)."""
    run = Runner(LifecyclePolicy(repeat_interval=7 * DAY))
    for d in range(15):
        run.round(T0 + d * DAY, [finding()])
    assert run.kinds() == [Change.FIRING, Change.REPEAT, Change.REPEAT]
    assert run.times(Change.REPEAT) == [T0 + 7 * DAY, T0 + 14 * DAY]

    acked = Runner(LifecyclePolicy(repeat_interval=7 * DAY))
    for d in range(15):
        if d == 2:
            acked.acks[KEY] = Acknowledgement(KEY, "alice", T0 + 2 * DAY - HOUR, "on it")
        acked.round(T0 + d * DAY, [finding()])
    assert acked.kinds() == [Change.FIRING, Change.ACKNOWLEDGED]
    assert acked.state[KEY].acknowledged_by == "alice"


def test_silence_holds_while_active_and_repeats_resume_after_it_expires() -> None:
    """An announced alert silenced on day 1 until day 5: SILENCED once, nothing while the
    silence holds (even past the repeat interval), no second FIRING when it expires (it was
    announced), and the reminder comes back after it: the next REPEAT is due at once."""
    run = Runner(LifecyclePolicy(repeat_interval=3 * DAY))
    run.silences.append(Silence(id="s1", until=T0 + 5 * DAY, by="bob", why="fix deploying",
                                created_at=T0 + DAY - HOUR, process="claims"))
    for d in range(5):
        run.round(T0 + d * DAY, [finding()])
        if d >= 1:
            assert run.state[KEY].silenced_by == "s1"
    assert run.kinds() == [Change.FIRING, Change.SILENCED]
    run.round(T0 + 5 * DAY, [finding()])
    assert run.state[KEY].silenced_by is None
    assert run.kinds() == [Change.FIRING, Change.SILENCED, Change.REPEAT]


def test_firing_under_a_silence_is_announced_when_the_silence_expires() -> None:
    """An alert that started firing under a silence sends nothing while silenced and one FIRING
    at the first evaluation after the silence expires, if its condition still holds."""
    run = Runner()
    run.silences.append(Silence(id="s1", until=T0 + 3 * DAY, by="bob", why="known",
                                created_at=T0 - DAY, key="bottleneck/claims/*"))
    for d in range(6):
        run.round(T0 + d * DAY, [finding()])
    assert run.kinds() == [Change.FIRING]
    assert run.times(Change.FIRING) == [T0 + 3 * DAY]
    assert run.state[KEY].fired_at == T0


def test_an_unannounced_silenced_firing_resolves_quietly_and_an_announced_one_does_not() -> None:
    """Resolve messages close only what was announced: silenced throughout gives no message at
    all; announced then silenced still sends its RESOLVED."""
    quiet = Runner()
    quiet.silences.append(Silence(id="s1", until=T0 + 30 * DAY, by="bob", why="known",
                                  created_at=T0 - DAY, process="claims"))
    quiet.round(T0, [finding()])
    quiet.round(T0 + 2 * DAY, [])
    assert quiet.state[KEY].status is Status.RESOLVED
    assert quiet.sent == []

    heard = Runner()
    heard.round(T0, [finding()])
    heard.silences.append(Silence(id="s1", until=T0 + 30 * DAY, by="bob", why="known",
                                  created_at=T0 + HOUR, process="claims"))
    heard.round(T0 + 2 * HOUR, [finding()])
    heard.round(T0 + 3 * DAY, [])
    assert heard.kinds() == [Change.FIRING, Change.SILENCED, Change.RESOLVED]


def test_escalation_fires_once_after_escalate_after_and_reaches_the_resolve() -> None:
    """Escalation after 2 days unacknowledged: one ESCALATED on day 2, none after; the alert
    keeps escalated_at through its RESOLVED so the router can send that to the escalation
    route too."""
    run = Runner(LifecyclePolicy(escalate_after=2 * DAY))
    for d in range(6):
        run.round(T0 + d * DAY, [finding()])
    assert run.kinds() == [Change.FIRING, Change.ESCALATED]
    assert run.times(Change.ESCALATED) == [T0 + 2 * DAY]
    run.round(T0 + 7 * DAY, [])
    assert run.kinds() == [Change.FIRING, Change.ESCALATED, Change.RESOLVED]
    resolved = run.sent[-1].alert
    assert resolved.status is Status.RESOLVED and resolved.escalated_at == T0 + 2 * DAY


def test_no_escalation_when_acknowledged_before_escalate_after() -> None:
    """An acknowledgement on day 1 means no ESCALATED (and no REPEAT) for that episode."""
    run = Runner(LifecyclePolicy(escalate_after=2 * DAY))
    for d in range(10):
        if d == 1:
            run.acks[KEY] = Acknowledgement(KEY, "alice", T0 + DAY)
        run.round(T0 + d * DAY, [finding()])
    assert run.kinds() == [Change.FIRING, Change.ACKNOWLEDGED]
    assert run.state[KEY].escalated_at is None


def test_no_events_inhibits_derived_alerts_but_not_governance() -> None:
    """While no_events is present for claims: a new bottleneck does not fire, a firing one is
    frozen (no repeat, no resolve even when absent for days), stale_review still fires, and
    other processes are unaffected; afterwards the frozen alert continues where it was."""
    run = Runner(LifecyclePolicy(repeat_interval=2 * DAY))
    rework = finding(rule="rework", subject="Ask documents")
    run.round(T0, [rework])
    no_events = finding(rule="no_events", subject="events", summary="No events since Oct 1")
    stale = finding(rule="stale_review", subject="review")
    other = finding(process="payments", subject="Approve")
    frozen = run.state[rework.key]
    for d in range(1, 6):
        run.round(T0 + d * DAY, [no_events, stale, finding(), other],
                  evaluated=("claims", "payments"))
    assert run.state[rework.key] == frozen
    assert finding().key not in run.state
    fired = {c.alert.key for c in run.sent if c.change is Change.FIRING}
    assert fired == {rework.key, no_events.key, stale.key, other.key}
    assert [c.change for c in run.sent if c.alert.key == rework.key] == [Change.FIRING]
    run.round(T0 + 6 * DAY, [rework, finding()], evaluated=("claims",))
    assert [c.change for c in run.sent if c.alert.key == rework.key] == [Change.FIRING, Change.REPEAT]
    assert run.state[finding().key].status is Status.FIRING


def test_a_new_episode_after_resolve_fires_again_without_the_old_acknowledgement() -> None:
    """FIRING, RESOLVED, then the condition returns after the recurrence window: a new FIRING
    with a fresh episode (new first_seen and fired_at, the old acknowledgement no longer
    counts, no link to the old one)."""
    run = Runner()
    run.round(T0, [finding()])
    run.acks[KEY] = Acknowledgement(KEY, "alice", T0 + HOUR)
    run.round(T0 + 2 * HOUR, [finding()])
    run.round(T0 + 3 * DAY, [])
    back = T0 + 3 * DAY + run.policy.recurrence_window + HOUR
    run.round(back, [finding()])
    assert run.kinds() == [Change.FIRING, Change.ACKNOWLEDGED, Change.RESOLVED, Change.FIRING]
    alert = run.state[KEY]
    assert alert.first_seen == alert.fired_at == back
    assert alert.acknowledged_by is None and alert.resolved_at is None
    assert alert.recurrences == 0 and alert.previous is None


def test_severity_rise_while_firing_is_announced_and_a_fall_is_not() -> None:
    """A warning that becomes critical sends FIRING again with the new summary; critical back
    to warning refreshes the alert quietly."""
    run = Runner()
    run.round(T0, [finding()])
    run.round(T0 + HOUR, [finding(severity=Severity.CRITICAL, summary="Wait: 12 days")])
    run.round(T0 + 2 * HOUR, [finding(summary="Wait: 5 days")])
    assert run.kinds() == [Change.FIRING, Change.FIRING]
    assert run.sent[1].alert.severity is Severity.CRITICAL
    assert run.sent[1].alert.summary == "Wait: 12 days"
    assert run.state[KEY].severity is Severity.WARNING
    assert run.state[KEY].summary == "Wait: 5 days"


def test_severity_oscillating_between_two_levels_is_announced_once() -> None:
    """Warning and critical alternating for 40 evaluations: one FIRING, one FIRING for the rise
    to critical, nothing more (a rise counts against the severity last announced)."""
    run = Runner()
    for i in range(40):
        run.round(T0 + i * HOUR, [finding(severity=(Severity.WARNING, Severity.CRITICAL)[i % 2])])
    assert run.kinds() == [Change.FIRING, Change.FIRING]
    assert [c.alert.severity for c in run.sent] == [Severity.WARNING, Severity.CRITICAL]


def test_severity_rise_under_a_silence_is_announced_when_it_expires() -> None:
    """A warning that became critical while silenced is announced (FIRING, critical) at the
    first evaluation after the silence expires."""
    run = Runner()
    run.round(T0, [finding()])
    run.silences.append(Silence(id="s1", until=T0 + 2 * DAY, by="bob", why="known",
                                created_at=T0 + HOUR, process="claims"))
    run.round(T0 + 2 * HOUR, [finding(severity=Severity.CRITICAL)])
    run.round(T0 + DAY, [finding(severity=Severity.CRITICAL)])
    assert run.kinds() == [Change.FIRING, Change.SILENCED]
    run.round(T0 + 2 * DAY, [finding(severity=Severity.CRITICAL)])
    assert run.kinds() == [Change.FIRING, Change.SILENCED, Change.FIRING]
    assert run.sent[-1].alert.severity is Severity.CRITICAL


def test_a_recovering_alert_neither_repeats_nor_escalates() -> None:
    """While its condition is clear (but not yet resolved) a firing alert sends no REPEAT and
    no ESCALATED; when the condition returns it continues the episode (no second FIRING) and
    the overdue escalation goes out then."""
    run = Runner(LifecyclePolicy(resolve_after=30 * DAY, repeat_interval=7 * DAY,
                                 escalate_after=2 * DAY))
    run.round(T0, [finding()])
    for d in range(1, 21):
        run.round(T0 + d * DAY, [])
    assert run.kinds() == [Change.FIRING]
    assert run.state[KEY].status is Status.FIRING
    run.round(T0 + 21 * DAY, [finding()])
    assert run.kinds() == [Change.FIRING, Change.ESCALATED]
    assert run.state[KEY].fired_at == T0


def test_findings_sharing_a_key_count_once_at_their_highest_severity() -> None:
    """Two findings with one key make one alert, with the more severe finding's summary."""
    run = Runner()
    changes = run.round(T0, [finding(summary="mild"),
                             finding(severity=Severity.CRITICAL, summary="severe"),
                             finding(severity=Severity.CRITICAL, summary="also severe")])
    assert [(c.change, c.alert.summary) for c in changes] == [(Change.FIRING, "severe")]


def test_a_finding_counts_its_process_as_evaluated() -> None:
    """A finding for a process missing from ``evaluated`` still opens its alert."""
    run = Runner()
    changes = run.round(T0, [finding(process="payments")], evaluated=())
    assert [c.alert.process for c in changes] == ["payments"]
    assert changes[0].alert.owner == "pay@example.com"


def test_alerts_of_processes_not_evaluated_are_untouched() -> None:
    """A process left out of a round keeps its alerts as they were, however long it is away."""
    run = Runner()
    run.round(T0, [finding()])
    before = run.state[KEY]
    assert run.round(T0 + 10 * DAY, [], evaluated=("payments",)) == []
    assert run.state[KEY] == before


def test_url_quotes_the_key_and_owner_comes_from_the_registry() -> None:
    """The link to the alert's own page URL-quotes its whole key (slashes too); the owner is the
    process's owner or None."""
    run = Runner(base_url="https://backlight.example.com/")
    f = finding(process="claims & returns/EU")
    run.round(T0, [f], evaluated=(f.process,))
    alert = run.state[f.key]
    assert alert.url == ("https://backlight.example.com/alerts/"
                         "bottleneck%2Fclaims%20%26%20returns%2FEU%2FAssessment")
    assert alert.owner is None


def test_changes_are_ordered_by_process_then_key() -> None:
    """Changes of one round come grouped per process, keys sorted, whatever the finding order."""
    run = Runner()
    found = [finding(process="payments", subject="B"), finding(subject="Z"),
             finding(process="payments", subject="A"), finding(subject="C")]
    changes = run.round(T0, found, evaluated=("claims", "payments"))
    assert [c.alert.key for c in changes] == [
        "bottleneck/claims/C", "bottleneck/claims/Z",
        "bottleneck/payments/A", "bottleneck/payments/B"]


def test_a_naive_now_is_refused() -> None:
    """``now`` without a timezone is a programming error, not a silent misreading."""
    with pytest.raises(ValueError, match="timezone"):
        advance({}, [], now=datetime(2026, 10, 5), policy=LifecyclePolicy(), owners={},
                evaluated=())


def _firing_resolved(changes: Iterable[AlertChange]) -> Mapping[str, list[AlertChange]]:
    per_key: dict[str, list[AlertChange]] = {}
    for c in changes:
        if c.change in (Change.FIRING, Change.RECURRED, Change.RESOLVED):
            per_key.setdefault(c.alert.key, []).append(c)
    return per_key


@settings(max_examples=150, deadline=None)
@given(
    rounds=st.lists(st.tuples(st.booleans(), st.integers(1, 72), st.sampled_from(list(Severity))),
                    min_size=1, max_size=60),
    pending_h=st.integers(0, 48), resolve_h=st.integers(0, 96),
    silence=st.none() | st.tuples(st.integers(0, 400), st.integers(1, 400)),
    ack_at=st.none() | st.integers(0, 800),
    vary_severity=st.booleans(),
)
def test_firing_and_resolved_alternate_for_any_sequence(
        rounds: list[tuple[bool, int, Severity]], pending_h: int, resolve_h: int,
        silence: tuple[int, int] | None, ack_at: int | None, vary_severity: bool) -> None:
    """For any sequence of present/absent findings, gaps, policy, silence and acknowledgement,
    each key's FIRING (or RECURRED) and RESOLVED changes alternate, starting with FIRING (or
    RECURRED, when the episode before was silenced throughout); a
    second FIRING without a RESOLVED between happens only when the severity rose; at most one
    ESCALATED per episode."""
    run = Runner(LifecyclePolicy(pending_for=pending_h * HOUR, resolve_after=resolve_h * HOUR,
                                 escalate_after=DAY))
    if silence is not None:
        start = T0 + silence[0] * HOUR
        run.silences.append(Silence(id="s", until=start + silence[1] * HOUR, by="bob", why="x",
                                    created_at=start, rule="bottleneck"))
    if ack_at is not None:
        run.acks[KEY] = Acknowledgement(KEY, "alice", T0 + ack_at * HOUR)
    now = T0
    for present, gap, severity in rounds:
        sev = severity if vary_severity else Severity.WARNING
        run.round(now, [finding(severity=sev)] if present else [])
        now += gap * HOUR
    announced = (Change.FIRING, Change.RECURRED, Change.REPEAT, Change.ESCALATED)
    for seq in _firing_resolved(run.sent).values():
        assert seq[0].change in (Change.FIRING, Change.RECURRED)  # RECURRED: FIRING was silenced
        for before, after in itertools.pairwise(seq):
            if after.change is Change.RESOLVED:
                assert before.change in (Change.FIRING, Change.RECURRED)
            elif after.change is Change.RECURRED:
                assert before.change is Change.RESOLVED
            elif before.change in (Change.FIRING, Change.RECURRED):  # again: a higher severity
                assert after.alert.fired_at == before.alert.fired_at
                told = [c for c in run.sent if c.change in announced and c.at < after.at]
                assert after.alert.severity.rank > told[-1].alert.severity.rank
    escalated_episodes = [c.alert.fired_at for c in run.sent if c.change is Change.ESCALATED]
    assert len(escalated_episodes) == len(set(escalated_episodes))  # at most once per episode


def test_acks_and_silences_apply_to_the_open_episode_as_the_web_shows_them() -> None:
    """What the web shows between evaluations: an acknowledgement counts for an open alert's
    current episode only (not one given before it began, not on a resolved alert), and the
    first active silence that matches names it silenced; none matching clears it."""
    run = Runner()
    run.round(T0, [finding()])
    alert = run.state[KEY]
    older = {KEY: Acknowledgement(KEY, "alice", T0 - HOUR)}
    newer = {KEY: Acknowledgement(KEY, "bob", T0 + HOUR)}
    assert with_acks_and_silences(alert, older, []).acknowledged_by is None
    assert with_acks_and_silences(alert, newer, []).acknowledged_by == "bob"
    resolved = replace(alert, status=Status.RESOLVED, resolved_at=T0 + DAY)
    assert with_acks_and_silences(resolved, newer, []).acknowledged_by is None
    silences = [Silence(id=name, until=T0 + DAY, by="carol", why="known", created_at=T0,
                        process=process) for name, process in
                (("other", "payments"), ("first", "claims"), ("second", "cl*"))]
    assert with_acks_and_silences(alert, {}, silences).silenced_by == "first"
    silenced = replace(alert, silenced_by="expired")
    assert with_acks_and_silences(silenced, {}, silences[:1]).silenced_by is None


def test_severities_rank_from_info_to_critical() -> None:
    """The one severity order, the one every list sorts by: info, then warning, then critical."""
    assert sorted(["critical", "info", "warning"], key=lambda v: Severity(v).rank) == [
        "info", "warning", "critical"]
    assert [s.rank for s in Severity] == [0, 1, 2]


def test_a_finding_only_above_the_clearing_threshold_holds_but_never_opens() -> None:
    """Hysteresis: a value hovering between the clearing and the firing threshold (weekly rounds
    alternating firing-level and holding-level findings) gives one FIRING and no RESOLVED; the
    same holding-level findings alone never open an alert."""
    hold = replace(finding(), opens=False)
    run = Runner(LifecyclePolicy(repeat_interval=365 * DAY))
    for week in range(12):
        run.round(T0 + week * 7 * DAY, [finding() if week % 2 == 0 else hold])
    assert run.kinds() == [Change.FIRING]
    assert run.state[KEY].status is Status.FIRING

    quiet = Runner()
    for week in range(12):
        quiet.round(T0 + week * 7 * DAY, [hold])
    assert quiet.sent == [] and quiet.state == {}


def test_an_alert_that_keeps_firing_and_resolving_is_marked_flapping_and_announced_once() -> None:
    """Weekly rounds crossing the clearing threshold every other week for 16 weeks: FIRING,
    RESOLVED, then one RECURRED marked flapping, after which the alert stays firing and quiet;
    clear for the whole flap window, it resolves once (four messages against sixteen)."""
    run = Runner()
    for week in range(16):
        run.round(T0 + week * 7 * DAY, [finding()] if week % 2 == 0 else [])
    assert run.kinds() == [Change.FIRING, Change.RESOLVED, Change.RECURRED]
    flapping = run.sent[-1].alert
    assert flapping.flapping and flapping.to_json()["flapping"] is True
    assert run.state[KEY].status is Status.FIRING and run.state[KEY].flapping
    for week in range(16, 22):
        run.round(T0 + week * 7 * DAY, [])
    assert run.kinds() == [Change.FIRING, Change.RESOLVED, Change.RECURRED, Change.RESOLVED,
                           Change.CONFIRMED]
    assert not run.state[KEY].flapping and run.state[KEY].status is Status.CONFIRMED

    plain = Runner(LifecyclePolicy(flap_changes=100))
    for week in range(16):
        plain.round(T0 + week * 7 * DAY, [finding()] if week % 2 == 0 else [])
    assert len(plain.sent) == 16


def test_a_condition_that_recurs_after_the_flap_window_is_not_flapping() -> None:
    """Firing and resolving once every two months never counts as flapping: each episode is
    announced and resolved."""
    run = Runner()
    for episode in range(4):
        start = T0 + episode * 60 * DAY
        run.round(start, [finding()])
        run.round(start + 7 * DAY, [])
    assert run.kinds() == [Change.FIRING, Change.RESOLVED] * 4
    assert not any(c.alert.flapping for c in run.sent)


def test_the_default_reminder_is_far_rarer_than_weekly_rounds() -> None:
    """With the default policy an unchanged firing alert evaluated weekly for 16 weeks is
    announced once and reminded at most every four weeks (3 reminders, not 15)."""
    run = Runner()
    for week in range(16):
        run.round(T0 + week * 7 * DAY, [finding()])
    assert run.kinds() == [Change.FIRING] + [Change.REPEAT] * 3
