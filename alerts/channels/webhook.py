"""Generic JSON webhook: the notification as data, with its idempotency key in the body.

``{"id", "process", "owner", "created_at", "changes": [{"change", "at", "alert"}]}`` where
``alert`` is ``Alert.to_json()``. ``id`` is stable across retries (it is also sent as the
``Idempotency-Key`` header), so a receiver can drop a redelivery. Values are data, not markup:
nothing is escaped; the receiver escapes for wherever it shows them.
"""

from __future__ import annotations

from typing import Any

from schemas.alerts import Notification


def build(notification: Notification) -> dict[str, Any]:
    """The generic webhook body for one notification."""
    return {
        "id": notification.id, "process": notification.process, "owner": notification.owner,
        "created_at": notification.created_at.isoformat(),
        "changes": [{"change": c.change.value, "at": c.at.isoformat(), "alert": c.alert.to_json()}
                    for c in notification.changes],
    }
