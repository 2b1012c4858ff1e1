"""After a resolution: confirmed when the condition stayed clear, recurred when it came back.
Pure, like alerts/lifecycle.py, which calls these steps (no I/O, no clock).

- **Resolved -> Confirmed.** A RESOLVED alert for whose key no finding at all is present (not
  even one only above the rule's clearing threshold, ``Finding.opens`` False: such a finding
  restarts the count, through ``last_seen``) becomes CONFIRMED once it has been clear for
  ``confirm_after`` since ``clear_since`` (its resolution, or the last time a finding lingered
  after it), counted in the process's working calendar when ``confirm_after`` is business time.
  CONFIRMED is sent when the episode had been announced (as RESOLVED is), to the alert's routes
  and to the escalation routes, with a sentence saying what held (``confirmation_text``).
- **Closed -> Recurred.** An opening finding within ``recurrence_window`` of the resolution
  (confirmed or not) reopens the same alert as a recurrence: it fires at once (it has proved
  itself once; a return is what must not go unseen), ``recurrences`` counts one more,
  ``previous`` keeps the earlier episode's first_seen, resolved_at, fix_owner and action, and the
  severity is one step above the finding's per recurrence, capped at critical, for as long as
  the episode lasts. RECURRED is sent instead of FIRING (a silence mutes it as it mutes FIRING:
  the episode is then announced as FIRING when the silence expires). Acknowledgement, owner and
  action start afresh: the episode's ``first_seen`` is the return. After ``recurrence_window`` a
  return is a new episode, as any new finding is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from schemas.alerts import Alert, Change, Finding, JsonValue, Severity, Status

if TYPE_CHECKING:
    from alerts.calendar import WorkCalendar
    from alerts.duration import Duration

_ORDER = tuple(Severity)


def raised(severity: Severity, steps: int) -> Severity:
    """``severity`` raised by ``steps`` steps in the severity order, capped at the highest."""
    return _ORDER[min(severity.rank + max(steps, 0), len(_ORDER) - 1)]


def clear_since(alert: Alert) -> datetime:
    """Since when a resolved alert has been clear: its resolution, or the last evaluation at
    which a finding for its key lingered after it (``last_seen``), whichever is later."""
    resolved = alert.resolved_at or alert.last_seen
    return max(resolved, alert.last_seen)


def clear_long_enough(alert: Alert, now: datetime, confirm_after: Duration,
                      calendar: WorkCalendar) -> bool:
    """Whether a resolved alert has been clear for ``confirm_after`` at ``now``: working time
    in ``calendar`` for business durations, wall time otherwise."""
    start = clear_since(alert)
    if confirm_after.business:
        return calendar.between(start, now) >= calendar.seconds(confirm_after)
    return (now - start).total_seconds() >= confirm_after.wall_seconds


def settle(prev: Alert, now: datetime, lingering: bool, confirm_after: Duration,
           calendar: WorkCalendar) -> tuple[Alert, list[Change]]:
    """A closed alert without an opening finding this round: a lingering (non-opening) finding
    restarts its clear count; else a resolved one is confirmed once clear long enough. An
    episode accepted as normal is not a fix that held: it is never confirmed."""
    if prev.status is not Status.RESOLVED or prev.accepted_at is not None:
        return prev, []
    if lingering:
        return replace(prev, last_seen=now), []
    if not clear_long_enough(prev, now, confirm_after, calendar):
        return prev, []
    alert = replace(prev, status=Status.CONFIRMED, confirmed_at=now)
    return alert, [Change.CONFIRMED] if alert.notified_at is not None else []


def recurs(prev: Alert | None, now: datetime, window: timedelta) -> bool:
    """Whether an opening finding now, for a closed alert, is a recurrence of its episode (not
    of one accepted as normal: a move away from an accepted level is a new episode)."""
    return (prev is not None and prev.closed and prev.resolved_at is not None
            and prev.accepted_at is None and now - prev.resolved_at <= window)


def previous_episode(prev: Alert) -> dict[str, JsonValue]:
    """What a recurrence keeps of the episode it reopens."""
    return {"first_seen": prev.first_seen.isoformat(),
            "resolved_at": prev.resolved_at.isoformat() if prev.resolved_at else None,
            "confirmed_at": prev.confirmed_at.isoformat() if prev.confirmed_at else None,
            "fix_owner": prev.fix_owner, "action": prev.action}


def reopen(prev: Alert, finding: Finding, now: datetime, owner: str | None,
           flips: tuple[datetime, ...], flapping: bool) -> Alert:
    """The alert reopened by a recurrence, firing from ``now``, its severity raised."""
    count = prev.recurrences + 1
    alert = Alert.from_finding(finding, Status.FIRING, owner, now, fired_at=now, flips=flips,
                               flapping=flapping, recurrences=count,
                               previous=previous_episode(prev))
    return replace(alert, severity=raised(finding.severity, count))


def continued(alert: Alert, prev: Alert) -> Alert:
    """An open episode refreshed from a new finding (``alert``) keeps what ``prev`` knew of its
    owner, action and recurrence, and a recurred one's raised severity."""
    return replace(alert, fix_owner=prev.fix_owner, action=prev.action,
                   recurrences=prev.recurrences, previous=prev.previous,
                   severity=raised(alert.severity, prev.recurrences))


# -- the confirmation's sentence -------------------------------------------------------------
def baseline_text(evidence: Mapping[str, JsonValue]) -> str | None:
    """The normal level the evidence names (a baseline window's median to p90 in business
    days, or a baseline share of cases), as words; None when it names none."""
    base = evidence.get("baseline")
    if isinstance(base, Mapping):
        median, p90 = _number(base.get("median_days")), _number(base.get("p90_days"))
        if median is not None and p90 is not None and p90 > median:
            return f"{median:g}-{p90:g} business days"
        if median is not None:
            return f"{median:g} business days"
    share = _number(evidence.get("baseline_share"))
    if share is not None:
        return f"{share * 100:.1f}% of cases"
    return None


def _number(value: JsonValue) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _day(moment: datetime, calendar: WorkCalendar) -> str:
    day = calendar.business_day_of(moment)
    return f"{day.day} {day:%B %Y}"


def confirmation_text(alert: Alert, calendar: WorkCalendar) -> str:
    """What a confirmation says held, from the alert's evidence and acknowledgement: ``waits
    before Risk review back to 0.8-1.1 business days since 3 March 2026, 9 business days after
    clm-ops took it on``. Says only what is known: without a baseline figure, that the
    condition stayed clear; without an acknowledgement, that nobody took it on."""
    since = _day(alert.resolved_at or alert.last_seen, calendar)
    level = baseline_text(alert.evidence)
    text = (f"{alert.subject}: back to {level} since {since}" if level is not None
            else f"{alert.subject}: clear since {since} (no baseline figure to compare with)")
    owner = alert.fix_owner or alert.acknowledged_by
    if alert.acknowledged_at is not None and owner and alert.resolved_at is not None:
        days = calendar.business_days(calendar.between(alert.acknowledged_at, alert.resolved_at))
        text += f", {days:.0f} business days after {owner} took it on"
    else:
        text += "; nobody acknowledged it"
    if alert.action:
        text += f" (action: {alert.action})"
    return text
