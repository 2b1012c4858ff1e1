"""The wording every chat message shares: what, where, since when, how bad, who owns it, evidence.

Everything here is plain text; most of it comes from event data (activity names, attribute values)
and is untrusted: control characters are already shown as escapes (``printable``: a chat message
never carries a raw ESC or BEL), and each platform's builder escapes the rest for its own markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from schemas import strict_json
from schemas.alerts import Alert, AlertChange, Change, JsonValue, Notification, Severity
from schemas.printable import printable

MAX_EVIDENCE = 6
"""Evidence highlights shown per alert (the full evidence is in the generic webhook/CloudEvent)."""
MAX_CASES = 5
MAX_VALUE_CHARS = 120

_VERB = {
    Change.FIRING: "Firing",
    Change.REPEAT: "Still firing",
    Change.ESCALATED: "Escalated",
    Change.RESOLVED: "Resolved",
    Change.ACKNOWLEDGED: "Acknowledged",
    Change.SILENCED: "Silenced",
    Change.ACCEPTED: "Accepted as normal",
    Change.CONFIRMED: "Confirmed resolved",
    Change.RECURRED: "Recurred",
    Change.NOTE: "Note",
}
_CLOSING = (Change.RESOLVED, Change.ACCEPTED, Change.CONFIRMED)
SEVERITY_MARK = {Severity.INFO: "ℹ️", Severity.WARNING: "⚠️", Severity.CRITICAL: "🔴"}  # noqa: RUF001
RESOLVED_MARK = "✅"
COLORS = {Severity.INFO: "#439FE0", Severity.WARNING: "#E8A317", Severity.CRITICAL: "#D00000"}
RESOLVED_COLOR = "#2EB886"


@dataclass(frozen=True)
class AlertText:
    """One alert change in words (raw, unescaped)."""

    change: Change
    severity: Severity
    title: str
    """``Firing: <summary>`` and the like: what is wrong, with the change worded."""
    status_line: str
    """How the change came about (escalated because unacknowledged, resolved at, ...)."""
    where: str
    since: str
    severity_text: str
    owner: str
    evidence: tuple[tuple[str, str], ...]
    cases: str
    url: str | None
    key: str

    @property
    def mark(self) -> str:
        """An emoji for the severity, or a tick when resolved."""
        return RESOLVED_MARK if self.change in _CLOSING else SEVERITY_MARK[self.severity]

    @property
    def color(self) -> str:
        """A hex colour for the severity, or green when resolved."""
        return RESOLVED_COLOR if self.change in _CLOSING else COLORS[self.severity]

    @property
    def closing(self) -> bool:
        """The change says the problem is over (resolved, or its resolution confirmed)."""
        return self.change in _CLOSING


def _moment(value: datetime | date | None) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M %Z").strip()
    return value.isoformat()


def owner_text(owner: str | None) -> str:
    """The owner as the message names it."""
    return owner if owner else "no owner"


def where_text(alert: Alert) -> str:
    """``process / subject (k=v, ...)``: where it is wrong."""
    text = f"{alert.process} / {alert.subject}"
    if alert.segment:
        text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(alert.segment.items())) + ")"
    return text


def _value(value: JsonValue) -> str:
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k}={_value(v)}" for k, v in list(value.items())[:6])
    elif isinstance(value, list | tuple):
        text = ", ".join(_value(v) for v in value[:6]) + (" ..." if len(value) > 6 else "")
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def evidence_highlights(evidence: Mapping[str, JsonValue]) -> tuple[tuple[str, str], ...]:
    """The first few evidence figures as (name, value) pairs, scalars first."""
    items = sorted(evidence.items(), key=lambda kv: isinstance(kv[1], Mapping | list | tuple))
    return tuple((str(k).replace("_", " "), _value(v)) for k, v in items[:MAX_EVIDENCE])


def cases_text(cases: tuple[str, ...]) -> str:
    """A few case ids, and how many more there are."""
    if not cases:
        return ""
    shown = ", ".join(cases[:MAX_CASES])
    return shown + (f" (+{len(cases) - MAX_CASES} more)" if len(cases) > MAX_CASES else "")


def status_line(change: AlertChange) -> str:
    """What happened to the alert, worded per change."""
    alert = change.alert
    if change.change is Change.FIRING and alert.flapping:
        return (f"Started firing again at {_moment(alert.fired_at or change.at)}: it keeps "
                f"firing and resolving ({len(alert.flips)} changes lately), so it is held as "
                "flapping and said once; it resolves after a quiet spell.")
    if change.change is Change.FIRING:
        return f"Started firing at {_moment(alert.fired_at or change.at)}."
    if change.change is Change.REPEAT:
        return f"Still firing since {_moment(alert.fired_at)} and not acknowledged (reminder)."
    if change.change is Change.ESCALATED:
        return (f"Escalated: firing since {_moment(alert.fired_at)} and not acknowledged by "
                f"{_moment(change.at)}.")
    if change.change is Change.RESOLVED:
        was = f" (was firing since {_moment(alert.fired_at)})" if alert.fired_at else ""
        return f"Resolved at {_moment(alert.resolved_at or change.at)}{was}."
    if change.change is Change.ACCEPTED:
        return (f"Accepted as the new normal by {alert.accepted_by or 'someone'} at "
                f"{_moment(alert.accepted_at or change.at)}: the level since "
                f"{_moment(alert.since or alert.first_seen)} is its baseline from now on.")
    if change.change is Change.ACKNOWLEDGED:
        who = alert.acknowledged_by or "someone"
        said = f"Acknowledged by {who} at {_moment(alert.acknowledged_at or change.at)}"
        return said + fix_text(alert) + "."
    if change.change in (Change.CONFIRMED, Change.RECURRED, Change.NOTE):
        return _loop_line(change)
    return f"Silenced ({alert.silenced_by or 'a silence'}) at {_moment(change.at)}."


def fix_text(alert: Alert) -> str:
    """``; fix owned by clm-ops: second assessor`` (empty when nobody owns it)."""
    if not alert.fix_owner:
        return ""
    return f"; fix owned by {alert.fix_owner}" + (f": {alert.action}" if alert.action else "")


def _loop_line(change: AlertChange) -> str:
    """The status line of a confirmation, a recurrence or a note."""
    alert = change.alert
    if change.change is Change.CONFIRMED:
        held = change.detail or f"{alert.subject}: stayed clear"
        return f"Confirmed resolved at {_moment(alert.confirmed_at or change.at)}: {held}."
    if change.change is Change.NOTE:
        note = change.note
        who, text = (note.by, note.text) if note is not None else ("someone", "")
        return f"Note by {who} at {_moment(change.at)}: {text}" + fix_text(alert) + "."
    before = alert.previous or {}
    times = "once" if alert.recurrences == 1 else f"{alert.recurrences} times"
    line = (f"Back at {_moment(alert.fired_at or change.at)} ({times} within the recurrence "
            f"window), severity raised to {alert.severity.value}")
    if before:
        owner, action = before.get("fix_owner"), before.get("action")
        line += (f"; the last episode ran from {_moment(_parsed(before.get('first_seen')))} to "
                 f"{_moment(_parsed(before.get('resolved_at')))}, fix owned by "
                 f"{owner or 'nobody'}" + (f": {action}" if action else ""))
    return line + "."


def _parsed(value: JsonValue) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def describe(change: AlertChange) -> AlertText:
    """The words for one alert change."""
    alert = change.alert
    since = alert.since or alert.first_seen
    return AlertText(
        change=change.change, severity=alert.severity,
        title=printable(f"{_VERB[change.change]}: {alert.summary}"),
        status_line=printable(status_line(change)), where=printable(where_text(alert)),
        since=_moment(since), severity_text=alert.severity.value,
        owner=printable(owner_text(alert.owner)),
        evidence=tuple((printable(k), printable(v)) for k, v in evidence_highlights(alert.evidence)),
        cases=printable(cases_text(alert.cases)), url=alert.url, key=printable(alert.key))


def headline(notification: Notification) -> str:
    """One line for the whole message: process, what changed, owner."""
    counts: dict[Change, int] = {}
    for c in notification.changes:
        counts[c.change] = counts.get(c.change, 0) + 1
    parts = [f"{n} {_VERB[change].lower()}" for change, n in counts.items()]
    return printable(f"Backlight: {notification.process}: {', '.join(parts)}"
                     f" (owner: {owner_text(notification.owner)})")


def map_url(notification: Notification) -> str | None:
    """The link to the process's map (the first alert that carries one)."""
    return next((c.alert.url for c in notification.changes if c.alert.url), None)


def defang(text: str) -> str:
    """Break ``scheme://`` in untrusted text with a zero-width space, so no platform links it."""
    return text.replace("://", ":\u200b//")


def clip(text: str, limit: int) -> str:
    """Cut text to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"



def encode(payload: object) -> bytes:
    """The exact bytes sent for a payload (compact JSON, UTF-8): size limits are checked on these."""
    return strict_json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
