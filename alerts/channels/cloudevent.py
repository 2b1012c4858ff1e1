"""CloudEvents 1.0 in structured JSON mode: one event per alert change, for Kafka consumers.

``type`` is ``backlight.alert.<change>``, ``subject`` the alert key (also the Kafka message
key, so one alert's events stay in order on one partition), ``id`` the notification id (routing
gives a Kafka channel one notification per change), ``data`` the alert as ``Alert.to_json()``
(with ``note`` for a NOTE change and ``detail`` for a CONFIRMED one).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from schemas.alerts import AlertChange, Notification

SPECVERSION = "1.0"
SOURCE = "backlight"
CONTENT_TYPE = "application/cloudevents+json"


def build(notification: Notification) -> dict[str, Any]:
    """The CloudEvent for a one-change notification (ValueError for any other)."""
    if len(notification.changes) != 1:
        raise ValueError(f"a CloudEvent carries one alert change, not {len(notification.changes)}")
    change = notification.changes[0]
    at = change.at.astimezone(UTC) if change.at.tzinfo else change.at.replace(tzinfo=UTC)
    return {
        "specversion": SPECVERSION, "id": notification.id, "source": SOURCE,
        "type": f"backlight.alert.{change.change.value}", "subject": change.alert.key,
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json", "data": _data(change),
    }


def _data(change: AlertChange) -> dict[str, Any]:
    """The alert as ``Alert.to_json()``, with a NOTE's note and a CONFIRMED's sentence."""
    data = change.alert.to_json()
    if change.note is not None:
        data["note"] = {"by": change.note.by, "at": change.note.at.isoformat(),
                        "text": change.note.text}
    if change.detail:
        data["detail"] = change.detail
    return data
