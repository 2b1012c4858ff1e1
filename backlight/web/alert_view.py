"""An alert's own page, as data: its timeline from the stored history (oldest first), who did
what at each step, and the evidence the alert carried then.

Every value stays a plain string (or a date) for the template to escape. A change this module
has no words for is shown by its own name, so a kind added later still reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backlight.web.forms import Field, evidence_fields, when
from schemas.alerts import Acknowledgement, Alert, AlertChange, Silence

LABELS: Mapping[str, str] = {
    "firing": "Fired", "repeat": "Reminded (still firing)", "escalated": "Escalated",
    "acknowledged": "Acknowledged", "silenced": "Silenced", "resolved": "Resolved",
    "accepted": "Accepted as the new normal", "confirmed": "Resolution confirmed",
    "recurred": "Recurred", "note": "Note",
}
"""The words for each kind of change, by its value (``schemas.alerts.Change``)."""


@dataclass(frozen=True)
class Step:
    """One moment of the timeline."""

    at: datetime
    change: str
    """The change's value (``firing``, ``acknowledged``...): its CSS class and fallback label."""
    label: str
    severity: str
    status: str
    summary: str
    who: tuple[str, ...]
    """Who acted and what they said, one line each ("by alice", "owner: bob", ...)."""
    evidence: tuple[Field, ...]


def label(change: str) -> str:
    """The words for a change, or its own name for one this page does not know."""
    return LABELS.get(change) or change.replace("_", " ").capitalize()


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, str) and len(value) > 18 and value[10:11] == "T":
        return when(value)
    return str(value)


def _people(change: str, alert: Alert, ack: Acknowledgement | None,
            silences: Mapping[str, Silence]) -> tuple[str, ...]:
    """Who acted at a step, from the alert as it was stored then (fields other branches add
    are read when present)."""
    lines: list[str] = []
    owner, action = getattr(alert, "fix_owner", None), getattr(alert, "action", None)
    if change in ("acknowledged", "note"):
        if change == "acknowledged" and alert.acknowledged_by:
            lines.append(f"by {alert.acknowledged_by}")
        if owner:
            lines.append(f"owner: {owner}")
        if action:
            lines.append(f"action: {action}")
        if (change == "acknowledged" and ack is not None and ack.note
                and ack.at == alert.acknowledged_at):
            lines.append(f"note: {ack.note}")
    elif change == "silenced" and alert.silenced_by:
        found = silences.get(alert.silenced_by)
        lines.append(f"by {found.by} until {when(found.until)}: {found.why}" if found
                     else f"silence {alert.silenced_by}")
    elif change == "accepted":
        by = getattr(alert, "accepted_by", None)
        if by:
            lines.append(f"by {by}")
    elif change == "recurred":
        count = getattr(alert, "recurrences", 0)
        if count:
            lines.append(f"recurrence {count}")
        previous = getattr(alert, "previous", None)
        if isinstance(previous, Mapping):
            lines.extend(f"before — {str(k).replace('_', ' ')}: {_text(v)}"
                         for k, v in previous.items() if v is not None)
    elif change == "escalated" and alert.escalated_at:
        lines.append("not acknowledged in time: sent to the escalation route")
    return tuple(lines)


def timeline(history: Sequence[AlertChange], ack: Acknowledgement | None,
             silences: Sequence[Silence]) -> list[Step]:
    """The steps of an alert's history (given newest first, as stored), oldest first; an
    acknowledgement recorded but not yet announced (no ``acknowledged`` change at its time)
    is a step of its own."""
    by_id = {s.id: s for s in silences}
    steps = [Step(c.at, c.change.value, label(c.change.value), c.alert.severity.value,
                  c.alert.status.value, c.alert.summary,
                  _people(c.change.value, c.alert, ack, by_id),
                  tuple(evidence_fields(c.alert.evidence)))
             for c in sorted(history, key=lambda c: c.at)]
    announced = any(s.change == "acknowledged" and ack is not None and
                    c.alert.acknowledged_at == ack.at for s, c in zip(steps, sorted(
                        history, key=lambda c: c.at), strict=True))
    if ack is not None and not announced:
        who = (f"by {ack.by}",) + ((f"note: {ack.note}",) if ack.note else ())
        steps.append(Step(ack.at, "acknowledged", label("acknowledged"), "", "", "", who, ()))
        steps.sort(key=lambda s: s.at)
    return steps
