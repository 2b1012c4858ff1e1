"""The alert contract: what a rule finds, the lifecycle an alert goes through, what gets sent.

One definition each, used by the rules, the lifecycle, the outbox, the CLI and the web:

- ``Finding``: what one rule says holds *now* for one stable key (rule, process, subject,
  segment). Rules return findings; they know nothing of history.
- ``Alert``: a finding with its lifecycle state (``Status``, plus acknowledged / silenced), as
  ``alerts evaluate --format json`` and ``alerts list`` print it (``to_json``).
- ``Change``: why a notification is sent (the CloudEvent type is ``backlight.alert.<change>``).
- ``Silence``, ``Acknowledgement``, ``AlertNote``, ``Review``: what people record, with who, when and why.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

JsonValue = Any
"""Anything ``json.dumps`` takes: evidence is shown and serialised, never computed on."""


class Severity(enum.StrEnum):
    """How bad a finding is. The members are declared from the least to the most severe: that
    order is the one severity order (``rank``), which the lifecycle, the routes, the CLI and the
    web sort and compare by."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """The place in the severity order: 0 for the least severe, higher is more severe."""
        return _SEVERITY_RANKS[self]


_SEVERITY_RANKS: Mapping[Severity, int] = {severity: i for i, severity in enumerate(Severity)}


class Status(enum.StrEnum):
    """Where an alert is in its lifecycle (acknowledged and silenced are flags beside it)."""

    PENDING = "pending"  # the condition holds, not yet for long enough to fire
    FIRING = "firing"
    RESOLVED = "resolved"  # the condition has been clear for long enough
    CONFIRMED = "confirmed"  # resolved, and it stayed clear for ``confirm_after``


class Change(enum.StrEnum):
    """Why a notification is sent; the CloudEvent type is ``backlight.alert.<value>``."""

    FIRING = "firing"  # newly firing (or firing again after it had resolved)
    REPEAT = "repeat"  # still firing, unacknowledged, after the repeat interval
    ESCALATED = "escalated"  # firing and not acknowledged in time: sent to the escalation route
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    ACCEPTED = "accepted"  # the owner accepted the new level as normal: the episode resolves
    CONFIRMED = "confirmed"  # resolved and stayed clear for confirm_after: the fix held
    RECURRED = "recurred"  # back within recurrence_window of a resolution: the episode reopens
    NOTE = "note"  # an owner/action note added while the alert is open


def alert_key(rule: str, process: str, subject: str,
              segment: Mapping[str, str] | None = None) -> str:
    """The stable key of an alert: ``rule/process/subject[/k=v,...]``; ``" -> "`` in a subject
    becomes ``->`` (``bottleneck/claims/Assessment->Expert inspection/region=east``)."""
    key = f"{rule}/{process}/{subject.replace(' -> ', '->')}"
    if segment:
        key += "/" + ",".join(f"{k}={v}" for k, v in sorted(segment.items()))
    return key


@dataclass(frozen=True)
class Finding:
    """What one rule says holds now. ``since`` is when the condition began (change point,
    review due date, ...); ``cases`` the case ids involved (capped by the rule)."""

    rule: str
    process: str
    subject: str
    severity: Severity
    summary: str
    evidence: Mapping[str, JsonValue] = field(default_factory=dict)
    segment: Mapping[str, str] = field(default_factory=dict)
    since: date | None = None
    cases: tuple[str, ...] = ()
    opens: bool = True
    """False: the condition is only above its clearing threshold (hysteresis), not its firing
    one; such a finding keeps an open alert open but never opens one."""

    @property
    def key(self) -> str:
        return alert_key(self.rule, self.process, self.subject, self.segment)


@dataclass(frozen=True)
class Alert:
    """A finding with its lifecycle state: what is listed, shown and sent."""

    key: str
    rule: str
    process: str
    subject: str
    severity: Severity
    status: Status
    summary: str
    evidence: Mapping[str, JsonValue]
    segment: Mapping[str, str]
    since: date | None
    cases: tuple[str, ...]
    owner: str | None
    first_seen: datetime
    """When the condition was first seen in this episode (pending starts here)."""
    last_seen: datetime
    """The last evaluation at which the condition held."""
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    silenced_by: str | None = None
    """The id of the silence that mutes it now, if any."""
    escalated_at: datetime | None = None
    url: str | None = None
    """A link to the alert's own page (``/alerts/{key}``), when a base URL is configured."""
    notified_at: datetime | None = None
    """When this episode was last announced (FIRING, REPEAT or ESCALATED sent); None while
    nothing was sent for it (pending, or firing under a silence): the repeat clock, and whether
    a resolve message is owed."""
    notified_severity: Severity | None = None
    """The severity last announced in this episode: a rise above it is announced again."""
    flips: tuple[datetime, ...] = ()
    """When the key last fired or resolved, within the lifecycle's flap window (across
    episodes): what flap detection counts."""
    flapping: bool = False
    """It changed state more often than the flap limit allows within the flap window: it
    stays firing (one announcement) until it has been clear for the whole window."""
    fix_owner: str | None = None
    """Who owns the fix: the episode's acknowledgement's owner (or whoever acknowledged)."""
    action: str | None = None
    """What is being done about it, as the acknowledgement recorded it (None: nothing said)."""
    baseline_until: datetime | None = None
    """The frozen baseline: while an episode is open, its rule compares with the baseline as it
    was before this instant, the episode's onset (the start, in UTC, of the first finding's
    ``since`` day; the time it opened when the finding has no ``since``)."""
    accepted_at: datetime | None = None
    """When the owner accepted the episode's level as normal (it resolved then, ``ACCEPTED``):
    from then on that level is the key's baseline (``alerts.anchors``)."""
    accepted_by: str | None = None
    confirmed_at: datetime | None = None
    """When the resolution was confirmed (clear for ``confirm_after``; status CONFIRMED)."""
    recurrences: int = 0
    """How often the condition came back within ``recurrence_window`` of a resolution."""
    previous: Mapping[str, JsonValue] | None = None
    """For a recurred episode: the earlier one's first_seen, resolved_at, fix_owner, action."""

    @classmethod
    def from_finding(cls, finding: Finding, status: Status, owner: str | None,
                     now: datetime, **state: Any) -> Alert:
        return cls(key=finding.key, rule=finding.rule, process=finding.process,
                   subject=finding.subject, severity=finding.severity, status=status,
                   summary=finding.summary, evidence=dict(finding.evidence),
                   segment=dict(finding.segment), since=finding.since, cases=finding.cases,
                   owner=owner, first_seen=state.pop("first_seen", now),
                   last_seen=state.pop("last_seen", now), **state)

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None

    @property
    def silenced(self) -> bool:
        return self.silenced_by is not None

    @property
    def closed(self) -> bool:
        """Resolved, confirmed or not: the episode is over (a return reopens or starts one)."""
        return self.status in (Status.RESOLVED, Status.CONFIRMED)

    def to_json(self) -> dict[str, JsonValue]:
        """The shape ``alerts evaluate --format json`` prints and the API returns."""
        return {
            "key": self.key, "rule": self.rule, "process": self.process,
            "subject": self.subject, "segment": dict(self.segment),
            "severity": self.severity.value, "status": self.status.value,
            "since": self.since.isoformat() if self.since else None,
            "summary": self.summary, "evidence": dict(self.evidence),
            "cases": list(self.cases), "owner": self.owner,
            "first_seen": self.first_seen.isoformat(), "last_seen": self.last_seen.isoformat(),
            "fired_at": _iso(self.fired_at), "resolved_at": _iso(self.resolved_at),
            "acknowledged": self.acknowledged, "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": _iso(self.acknowledged_at),
            "silenced": self.silenced, "silenced_by": self.silenced_by,
            "escalated_at": _iso(self.escalated_at), "url": self.url,
            "notified_at": _iso(self.notified_at),
            "notified_severity": self.notified_severity.value if self.notified_severity else None,
            "flapping": self.flapping, "flips": [t.isoformat() for t in self.flips],
            "fix_owner": self.fix_owner, "action": self.action,
            "baseline_until": _iso(self.baseline_until), "accepted_at": _iso(self.accepted_at),
            "accepted_by": self.accepted_by, "confirmed_at": _iso(self.confirmed_at),
            "recurrences": self.recurrences,
            "previous": dict(self.previous) if self.previous is not None else None,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True)
class Silence:
    """Mutes the alerts it matches until ``until`` (always expiring). A matcher value may use
    shell wildcards (``bottleneck/claims/*``); every given matcher must match."""

    id: str
    until: datetime
    by: str
    why: str
    created_at: datetime
    key: str | None = None
    rule: str | None = None
    process: str | None = None
    severity: Severity | None = None

    def active(self, now: datetime) -> bool:
        return self.created_at <= now < self.until

    def matches(self, alert: Alert | Finding) -> bool:
        checks = ((self.key, alert.key), (self.rule, alert.rule), (self.process, alert.process))
        if any(want is not None and not fnmatch.fnmatchcase(have, want) for want, have in checks):
            return False
        return self.severity is None or self.severity == alert.severity


@dataclass(frozen=True)
class Acknowledgement:
    """Someone took an alert on: no more repeats or escalation for this firing episode."""

    key: str
    by: str
    at: datetime
    note: str = ""
    owner: str | None = None
    """Who owns the fix; None: whoever acknowledged (``by``)."""
    action: str = ""
    """What is being done about it."""

    @property
    def fix_owner(self) -> str:
        """Who owns the fix: ``owner``, or ``by`` when none was named."""
        return self.owner or self.by


@dataclass(frozen=True)
class AlertNote:
    """A note added to an open alert (what was done, what is next): sent once, kept."""

    key: str
    by: str
    at: datetime
    text: str


@dataclass(frozen=True)
class Acceptance:
    """The owner accepted an open alert's new level as normal (``backlight alerts accept``):
    the episode resolves at the next evaluation, and that level is its key's baseline."""

    key: str
    by: str
    at: datetime
    why: str


@dataclass(frozen=True)
class Review:
    """A process definition was reviewed (``backlight review``); the latest one counts."""

    process: str
    by: str
    at: datetime
    note: str = ""


@dataclass(frozen=True)
class AlertChange:
    """One alert's state change at one evaluation: what a notification announces."""

    change: Change
    alert: Alert
    at: datetime
    transition: str = ""
    """What makes this change one of its kind, from the alert's key and the state it changed
    from (alerts/lifecycle.py), never the evaluation's time: two evaluations that overlap and
    see the same state find the same transition, so its notification is queued once. Empty
    for a change made by hand (the notification id then counts its time)."""
    note: AlertNote | None = None
    """The note a NOTE change announces."""
    detail: str = ""
    """What the change says beyond the alert's state: a CONFIRMED change's sentence of what
    held (alerts/confirmation.py)."""


@dataclass(frozen=True)
class Notification:
    """One message to one channel: the changes of one process (and its owner) found together
    at one evaluation. ``id`` is the idempotency key the receiver sees (stable across retries)."""

    id: str
    channel: str
    process: str
    owner: str | None
    changes: tuple[AlertChange, ...]
    created_at: datetime
