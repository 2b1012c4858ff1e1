"""The alert lifecycle: from this round's findings and the previous state to the new state and
what to notify. Pure: no I/O and no clock (``now`` is passed in).

Modelled on Prometheus Alertmanager and Grafana alerting (Normal -> Pending -> Firing ->
Recovering -> Resolved), on business timescales. Per alert key, at each evaluation:

- **Normal -> Pending -> Firing.** A new finding opens an episode (``first_seen``) as PENDING;
  it fires once the condition has held at every evaluation for ``pending_for`` (at once when
  that is 0). A pending alert whose condition clears is dropped silently.
- **Firing -> Recovering -> Resolved.** A firing alert whose condition is clear stays FIRING
  ("recovering": ``last_seen`` is older than ``now``) until it has been clear for
  ``resolve_after``, counted from ``last_seen``; then it is RESOLVED. A condition that comes
  back before that simply continues the episode, so a value oscillating at a threshold sends
  one FIRING and nothing else.
- **Resolved -> Confirmed, or Recurred** (the steps are in alerts/confirmation.py). A resolved
  alert that stays clear (no finding at all for its key, not even a non-opening one) for
  ``confirm_after`` (business time in the process's calendar) becomes CONFIRMED, and CONFIRMED
  is sent (to the escalation routes too) with a sentence of what held. A condition that comes
  back within ``recurrence_window`` of the resolution reopens the same alert: it fires at once
  as RECURRED (not FIRING), ``recurrences`` + 1, ``previous`` linking the earlier episode
  (first_seen, resolved_at, fix_owner, action), its severity one step up per recurrence (capped
  at critical). After the window, a new finding opens a new episode.
- **What is sent** (``Change``), at most once each per key and evaluation, in this order:
  FIRING when the episode is first announced (``notified_at`` was None: it just fired, or it
  fired under a silence that has now expired while the condition still holds), and again when
  the severity rises above the one last announced (``notified_severity``; so a severity
  oscillating between two levels is announced once, and a rise under a silence is announced
  when the silence expires); ESCALATED once per episode when firing, not
  acknowledged and ``now - fired_at >= escalate_after``; REPEAT when still firing, not
  acknowledged and nothing was sent for ``repeat_interval`` (an ESCALATED in the same round
  stands in for it); ACKNOWLEDGED / SILENCED once when an announced episode is acknowledged /
  silenced, so whoever heard the FIRING learns why it goes quiet. REPEAT and ESCALATED are
  sent only while the condition holds (not while recovering).
- **RESOLVED** is sent exactly when the episode was announced (``notified_at`` is set), even
  if a silence matches at that moment: every FIRING heard is closed by one RESOLVED, and a
  firing that was never announced (silenced throughout) resolves quietly. An alert that was
  escalated keeps ``escalated_at``, so the router sends its RESOLVED to the escalation route too.
- **Silences** (active at ``now`` and matching the refreshed alert) mute FIRING, REPEAT,
  ESCALATED, RECURRED and ACKNOWLEDGED; the state still advances (pending, firing, resolving) and
  ``silenced_by`` names the first matching silence. The escalation clock keeps running, so an
  overdue alert escalates as soon as its silence expires.
- **Acknowledgements** count for the current episode only (``ack.at >= first_seen``); they stop
  repeats and escalation (a severity rise is still announced); a new episode starts without one.
  The episode's acknowledgement names who owns the fix (``fix_owner``: its owner, else whoever
  acknowledged) and what is being done (``action``); ACKNOWLEDGED carries both. Notes on an
  open alert (``AlertNote``) are recorded and sent by hand (``Change.NOTE``), not here.
- **Inhibition.** When a finding of a rule in ``inhibited_by`` is present (pending or firing)
  for a process, that process's alerts of every other rule except ``never_inhibited`` are
  frozen: their previous state is kept untouched (no new alert, no firing, repeat, escalation
  or resolve), because with the feed stopped neither the presence nor the absence of a derived
  finding is evidence. They continue from that state once the inhibiting finding is gone.
- **Hysteresis.** A finding that does not open (``Finding.opens`` False: its condition is
  above the rule's clearing threshold, not its firing one) counts as present for an open
  (pending or firing) alert and as absent otherwise: a value hovering between the two
  thresholds neither opens an alert nor resolves one.
- **Flapping.** Each time a key fires or resolves is recorded (``Alert.flips``, kept across
  episodes, within ``flap_window``). A key that would change state more than ``flap_changes``
  times in the window is flapping (``Alert.flapping``): the firing that makes it so is
  announced once, marked flapping, and it then stays firing, without further messages (no
  reminders either; the crossings it keeps making are still counted), until
  its condition has been clear for the whole ``flap_window`` (one RESOLVED then), instead of
  firing and resolving at every crossing, as Nagios' flap detection does.
- **Frozen baseline.** An episode keeps ``baseline_until`` from when it opened (the start of
  its first finding's ``since`` day, or its opening time): the evaluator hands it back to the
  rules (``alerts.anchors``), which compare the key with the baseline as it was before it.
- **Accepted as normal.** An acceptance given in an open episode (``Acceptance.at >=
  first_seen``) resolves it (``accepted_at``/``accepted_by``), before the round's findings are
  stepped (``accept_step``); ACCEPTED is sent once, when the episode was announced (in place of
  RESOLVED). The accepted level is then the key's baseline (``alerts.anchors``).
- **Scope.** Only processes in ``evaluated`` (plus those with a finding this round) advance;
  alerts of other processes are kept untouched. Resolved alerts are kept for history. When
  several findings share a key, the most severe (then the first) counts. Summary, evidence,
  severity, cases, owner and URL are refreshed from the latest finding and ``owners``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import quote

from alerts.confirmation import confirmation_text, continued, recurs, reopen, settle
from alerts.duration import Duration
from schemas.alerts import (
    Acceptance,
    Acknowledgement,
    Alert,
    AlertChange,
    Change,
    Finding,
    Silence,
    Status,
)

if TYPE_CHECKING:
    from alerts.calendar import WorkCalendar

_NO_ACKS: Mapping[str, Acknowledgement] = MappingProxyType({})
_NO_ACCEPTANCES: Mapping[str, Acceptance] = MappingProxyType({})
_NO_CALENDARS: Mapping[str, WorkCalendar] = MappingProxyType({})


@dataclass(frozen=True)
class LifecyclePolicy:
    """How long a condition must hold or stay clear, and when to remind and escalate."""

    pending_for: timedelta = timedelta(0)
    """The condition must hold this long before firing (0: fire at once)."""
    resolve_after: timedelta = timedelta(hours=24)
    """A firing alert must be clear this long before it resolves (no flapping)."""
    repeat_interval: timedelta = timedelta(days=28)
    """Re-send an unchanged, unacknowledged firing alert after this: far rarer than rounds (the
    weekly digest lists what is still open; a reminder every round is what gets a channel
    muted)."""
    flap_window: timedelta = timedelta(days=28)
    """How far back flap detection counts a key's state changes."""
    flap_changes: int = 2
    """More state changes (fired, resolved) than this within ``flap_window``: flapping."""
    escalate_after: timedelta | None = None
    """Firing and not acknowledged this long: one ESCALATED change per episode."""
    inhibited_by: tuple[str, ...] = field(default_factory=lambda: _inhibiting())
    """While a finding of one of these rules is present for a process, its other alerts freeze.
    By default the rules declared so (``Rule.inhibits``)."""
    never_inhibited: tuple[str, ...] = field(default_factory=lambda: _never_inhibited())
    """Rules whose alerts never freeze. By default those declared so (``Rule.inhibitable``)."""
    confirm_after: Duration = field(default_factory=lambda: Duration(5, "business_days"))
    """A resolved alert clear this long (in its process's calendar) is CONFIRMED."""
    recurrence_window: timedelta = timedelta(days=30)
    """A condition back within this of a resolution reopens the episode as recurred."""


# The registry is imported when a policy takes its defaults, not at the top: this module stays
# free of the rules' dependencies (polars, the mining core) until then.
def _inhibiting() -> tuple[str, ...]:
    from alerts.rules import RULES

    return tuple(rule.name for rule in RULES if rule.inhibits)


def _never_inhibited() -> tuple[str, ...]:
    from alerts.rules import RULES

    return tuple(rule.name for rule in RULES if not rule.inhibitable)


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one evaluation round."""

    alerts: tuple[Alert, ...]
    """The new state of every known alert (resolved ones kept for history), ordered by key."""
    changes: tuple[AlertChange, ...]
    """What to notify, ordered by process, then key, then the order of the module docstring."""


@dataclass(frozen=True)
class _Round:
    """What every key's step needs to know about this round."""

    now: datetime
    policy: LifecyclePolicy
    owners: Mapping[str, str | None]
    silences: tuple[Silence, ...]
    acks: Mapping[str, Acknowledgement]
    base_url: str | None
    calendars: Mapping[str, WorkCalendar]
    lingering: frozenset[str]
    """Keys of closed alerts with a finding that does not open (above the clearing threshold
    only): not clear, so not yet confirmed."""

    def calendar(self, process: str) -> WorkCalendar:
        """The process's working calendar (the default one when none is given)."""
        found = self.calendars.get(process)
        if found is None:
            from alerts.calendar import WorkCalendar  # its dependencies only where counted

            found = WorkCalendar()
        return found

    def url(self, key: str) -> str | None:
        """The alert's own page (``/alerts/{key}``, its process's map a click away)."""
        if self.base_url is None:
            return None
        return f"{self.base_url.rstrip('/')}/alerts/{quote(key, safe='')}"


def advance(previous: Mapping[str, Alert], findings: Sequence[Finding], *, now: datetime,
            policy: LifecyclePolicy, owners: Mapping[str, str | None],
            evaluated: Collection[str], silences: Sequence[Silence] = (),
            acks: Mapping[str, Acknowledgement] = _NO_ACKS,
            base_url: str | None = None,
            calendars: Mapping[str, WorkCalendar] = _NO_CALENDARS,
            acceptances: Mapping[str, Acceptance] = _NO_ACCEPTANCES) -> Evaluation:
    """Advance every alert by one evaluation at ``now`` (aware) and say what to notify;
    ``calendars``: each process's working calendar (confirm_after counts in it);
    ``acceptances``: the levels accepted as normal, applied first (``accept_step``)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    previous, accepted = accept_step(previous, acceptances, now)
    current = {key: f for key, f in _by_key(findings).items()
               if f.opens or _open(previous.get(key))}
    scope = set(evaluated) | {f.process for f in current.values()}
    inhibiting = {f.process for f in current.values() if f.rule in policy.inhibited_by}
    exempt = set(policy.never_inhibited) | set(policy.inhibited_by)
    lingering = frozenset(f.key for f in findings if f.key not in current)
    rnd = _Round(now, policy, owners, tuple(s for s in silences if s.active(now)), acks, base_url,
                 calendars, lingering)
    alerts: list[Alert] = []
    changes: list[AlertChange] = list(accepted)
    for key in sorted(set(previous) | set(current)):
        prev, finding = previous.get(key), current.get(key)
        subject = finding if finding is not None else prev
        assert subject is not None
        frozen = subject.process in inhibiting and subject.rule not in exempt
        if subject.process not in scope or frozen:
            if prev is not None:
                alerts.append(prev)
            continue
        alert, sent = _step(prev, finding, rnd)
        if alert is not None:
            alerts.append(alert)
            changes.extend(AlertChange(change, alert, now, transition(prev, alert, change),
                                       detail=_detail(change, alert, rnd))
                           for change in sent)
    changes.sort(key=lambda c: c.alert.process)  # stable: keys stay sorted within a process
    return Evaluation(tuple(alerts), tuple(changes))


def accept_step(previous: Mapping[str, Alert], acceptances: Mapping[str, Acceptance],
                now: datetime) -> tuple[Mapping[str, Alert], list[AlertChange]]:
    """The alerts with every open episode that was accepted as normal (an acceptance of its key
    at or after its ``first_seen``) resolved as accepted, and the ACCEPTED changes to send (for
    the episodes that were announced)."""
    if not acceptances:
        return previous, []
    alerts, changes = dict(previous), []
    for key, acceptance in acceptances.items():
        prev = previous.get(key)
        if not _open(prev) or prev is None or acceptance.at < prev.first_seen:
            continue
        done = replace(prev, status=Status.RESOLVED, resolved_at=now, accepted_at=acceptance.at,
                       accepted_by=acceptance.by, flapping=False)
        alerts[key] = done
        if prev.notified_at is not None:
            changes.append(AlertChange(Change.ACCEPTED, done, now,
                                       transition(prev, done, Change.ACCEPTED)))
    return alerts, changes


def onset_of(finding: Finding, now: datetime) -> datetime:
    """Where an episode opened by ``finding`` freezes its baseline: the start (UTC) of its
    ``since`` day, or ``now`` when it has none."""
    return now if finding.since is None else datetime.combine(finding.since, time(0), tzinfo=UTC)


def _by_key(findings: Sequence[Finding]) -> dict[str, Finding]:
    """One finding per key: the most severe, the first among equals."""
    chosen: dict[str, Finding] = {}
    for finding in findings:
        held = chosen.get(finding.key)
        if held is None or finding.severity.rank > held.severity.rank:
            chosen[finding.key] = finding
    return chosen


def _open(alert: Alert | None) -> bool:
    return alert is not None and not alert.closed


def _recent(flips: Iterable[datetime], rnd: _Round) -> tuple[datetime, ...]:
    """The state changes within the flap window before now."""
    return tuple(t for t in flips if rnd.now - t < rnd.policy.flap_window)


def _step(prev: Alert | None, finding: Finding | None, rnd: _Round) -> tuple[Alert | None, list[Change]]:
    """One key's new state and changes in an evaluated, uninhibited process."""
    if finding is None:
        if prev is None or prev.status is Status.PENDING:
            return None, []  # nothing, or a pending alert that cleared: dropped silently
        if prev.closed:
            return _settle(prev, rnd)
        return _clear(prev, rnd)
    return _present(prev, finding, rnd)


def _clear(prev: Alert, rnd: _Round) -> tuple[Alert, list[Change]]:
    """A firing alert whose condition is clear: recovering, or resolved after resolve_after."""
    alert = _dress(prev, rnd)
    clear_for = rnd.now - prev.last_seen
    if clear_for >= rnd.policy.resolve_after:
        flips = (*_recent(prev.flips, rnd), rnd.now)
        if len(flips) <= rnd.policy.flap_changes or clear_for >= rnd.policy.flap_window:
            alert = replace(alert, status=Status.RESOLVED, resolved_at=rnd.now, flips=flips,
                            flapping=False)
            return alert, [Change.RESOLVED] if alert.notified_at is not None else []
        held = _recent(prev.flips, rnd)  # flapping: firing until clear for the whole window
        if not prev.flips or prev.flips[-1] <= prev.last_seen:
            held = (*held, rnd.now)  # the condition cleared since it was last recorded
        alert = replace(alert, flips=held, flapping=True)
    return alert, list(_notices(prev, alert))


def _present(prev: Alert | None, finding: Finding, rnd: _Round) -> tuple[Alert, list[Change]]:
    """The condition holds: open or continue the episode, fire, remind, escalate."""
    now, policy = rnd.now, rnd.policy
    owner = rnd.owners.get(finding.process)
    flips = _recent(prev.flips, rnd) if prev is not None else ()
    if prev is not None and prev.flapping and prev.flips and prev.flips[-1] > prev.last_seen:
        flips = (*flips, now)  # a held flapping alert whose condition came back
    if recurs(prev, now, policy.recurrence_window):
        assert prev is not None
        return _recur(prev, finding, rnd)
    if prev is None or prev.closed:
        episode = None
        alert = Alert.from_finding(finding, Status.PENDING, owner, now, flips=flips)
    else:
        episode = prev
        alert = Alert.from_finding(
            finding, prev.status, owner, now, first_seen=prev.first_seen, fired_at=prev.fired_at,
            acknowledged_by=prev.acknowledged_by, acknowledged_at=prev.acknowledged_at,
            escalated_at=prev.escalated_at, notified_at=prev.notified_at,
            notified_severity=prev.notified_severity, flips=flips,
            flapping=prev.flapping and len(flips) > policy.flap_changes)
        alert = continued(alert, prev)
    frozen = episode.baseline_until if episode is not None else None
    alert = replace(alert, baseline_until=frozen or onset_of(finding, now))
    if alert.status is Status.PENDING and now - alert.first_seen >= policy.pending_for:
        flips = (*flips, now)
        alert = replace(alert, status=Status.FIRING, fired_at=now, flips=flips,
                        flapping=len(flips) > policy.flap_changes)
    alert = _dress(alert, rnd)
    if alert.status is not Status.FIRING:
        return alert, []
    sent: list[Change] = []
    if not alert.silenced:
        assert alert.fired_at is not None
        told = alert.notified_severity
        if alert.notified_at is None or (told is not None and alert.severity.rank > told.rank):
            sent.append(Change.FIRING)
        due = not alert.acknowledged and alert.escalated_at is None
        if due and policy.escalate_after is not None and now - alert.fired_at >= policy.escalate_after:
            sent.append(Change.ESCALATED)
            alert = replace(alert, escalated_at=now)
        elif (not sent and not alert.acknowledged and not alert.flapping
              and alert.notified_at is not None and now - alert.notified_at >= policy.repeat_interval):
            sent.append(Change.REPEAT)
        if sent:
            alert = replace(alert, notified_at=now, notified_severity=alert.severity)
    sent.extend(_notices(episode, alert))
    return alert, sent


def _settle(prev: Alert, rnd: _Round) -> tuple[Alert, list[Change]]:
    """A closed alert without an opening finding: confirmed once clear for confirm_after."""
    return settle(prev, rnd.now, prev.key in rnd.lingering, rnd.policy.confirm_after,
                  rnd.calendar(prev.process))


def _recur(prev: Alert, finding: Finding, rnd: _Round) -> tuple[Alert, list[Change]]:
    """An opening finding within recurrence_window of a resolution: the episode reopens."""
    flips = (*_recent(prev.flips, rnd), rnd.now)
    alert = reopen(prev, finding, rnd.now, rnd.owners.get(finding.process), flips,
                   flapping=len(flips) > rnd.policy.flap_changes)
    alert = replace(alert, baseline_until=prev.baseline_until or onset_of(finding, rnd.now))
    alert = _dress(alert, rnd)
    if alert.silenced:
        return alert, []
    return replace(alert, notified_at=rnd.now, notified_severity=alert.severity), [Change.RECURRED]


def _detail(change: Change, alert: Alert, rnd: _Round) -> str:
    """Words a change carries beyond the alert: a confirmation's sentence."""
    if change is Change.CONFIRMED:
        return confirmation_text(alert, rnd.calendar(alert.process))
    return ""


def _dress(alert: Alert, rnd: _Round) -> Alert:
    """Refresh owner, URL, silence and acknowledgement for this round."""
    alert = replace(alert, owner=rnd.owners.get(alert.process), url=rnd.url(alert.key))
    return with_acks_and_silences(alert, rnd.acks, rnd.silences)


def episode_ack(alert: Alert, acks: Mapping[str, Acknowledgement]) -> Acknowledgement | None:
    """The acknowledgement that counts for the alert now: the one recorded for its key, if the
    alert is open (pending or firing) and it was given in this episode (at or after
    ``first_seen``); None otherwise."""
    ack = acks.get(alert.key)
    if ack is None or alert.closed or ack.at < alert.first_seen:
        return None
    return ack


def matching_silence(alert: Alert, silences: Iterable[Silence]) -> Silence | None:
    """The first of ``silences`` (the ones active now) that matches the alert, if any."""
    return next((s for s in silences if s.matches(alert)), None)


def with_acks_and_silences(alert: Alert, acks: Mapping[str, Acknowledgement],
                           silences: Iterable[Silence]) -> Alert:
    """The alert as an evaluation stores it: acknowledged by its episode's acknowledgement
    (``episode_ack``; an earlier one is kept), silenced by the first matching silence of
    ``silences`` (the ones active now), or by none. The lifecycle applies it at each evaluation;
    the web applies it to show what was recorded since the last one."""
    ack = episode_ack(alert, acks)
    if ack is not None:
        alert = replace(alert, acknowledged_by=ack.by, acknowledged_at=ack.at,
                        fix_owner=ack.fix_owner, action=ack.action or None)
    silence = matching_silence(alert, silences)
    return replace(alert, silenced_by=None if silence is None else silence.id)


def _notices(before: Alert | None, after: Alert) -> Iterator[Change]:
    """ACKNOWLEDGED / SILENCED, once, for a firing episode that was announced."""
    if before is None or after.status is not Status.FIRING or after.notified_at is None:
        return
    if after.acknowledged and not before.acknowledged and not after.silenced:
        yield Change.ACKNOWLEDGED
    if after.silenced and not before.silenced:
        yield Change.SILENCED


def transition(before: Alert | None, after: Alert, change: Change) -> str:
    """What identifies one change of one alert, from its key and the state it changed from,
    never the evaluation's time, so that two evaluations that overlap (two workers reading the
    same stored state) name it alike and its notification is queued once.

    The episode is its ``first_seen`` when it was open before this round, or "after" the
    previous episode (or none) when it opened in this round (then ``first_seen`` is this
    round's time). Within an episode: FIRING once per severity announced (they only rise),
    ESCALATED and RESOLVED once, REPEAT once per announcement it follows, ACKNOWLEDGED once per
    acknowledgement, SILENCED once per silence and the state it silenced."""
    if before is None or before.closed:
        episode = f"after {before.first_seen.isoformat() if before else '-'}"
    else:
        episode = f"since {before.first_seen.isoformat()}"
    detail = ""
    if change is Change.FIRING:
        detail = after.severity.value
    elif change is Change.REPEAT and before is not None and before.notified_at is not None:
        detail = before.notified_at.isoformat()
    elif change is Change.ACCEPTED and after.accepted_at is not None:
        detail = after.accepted_at.isoformat()
    elif change is Change.ACKNOWLEDGED and after.acknowledged_at is not None:
        detail = after.acknowledged_at.isoformat()
    elif change is Change.SILENCED and before is not None:
        detail = f"{after.silenced_by} {before.last_seen.isoformat()}"
    return "\x1f".join((after.key, episode, change.value, detail))
