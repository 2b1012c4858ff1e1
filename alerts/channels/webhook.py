"""Generic JSON webhook: the notification as data, with its idempotency key in the body.

``{"id", "process", "owner", "created_at", "changes": [{"change", "at", "alert"}]}`` where
``alert`` is ``Alert.to_json()`` (a NOTE change adds ``note``: by, at, text; a CONFIRMED one
``detail``, the sentence of what held). ``id`` is stable across retries (it is also sent as the
``Idempotency-Key`` header), so a receiver can drop a redelivery. Values are data, not markup:
nothing is escaped; the receiver escapes for wherever it shows them.
"""

from __future__ import annotations

from typing import Any

from schemas.alerts import AlertChange, Notification


def build(notification: Notification) -> dict[str, Any]:
    """The generic webhook body for one notification."""
    return {
        "id": notification.id, "process": notification.process, "owner": notification.owner,
        "created_at": notification.created_at.isoformat(),
        "changes": [change_json(c) for c in notification.changes],
    }


def change_json(change: AlertChange) -> dict[str, Any]:
    """One change as data: its kind, time and alert, with the note a NOTE announces and the
    sentence a CONFIRMED says (``detail``) when it has them."""
    out: dict[str, Any] = {"change": change.change.value, "at": change.at.isoformat(),
                           "alert": change.alert.to_json()}
    if change.note is not None:
        out["note"] = {"by": change.note.by, "at": change.note.at.isoformat(),
                       "text": change.note.text}
    if change.detail:
        out["detail"] = change.detail
    return out
