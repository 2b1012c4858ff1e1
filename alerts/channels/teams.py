"""Microsoft Teams through a Workflows webhook: one Adaptive Card 1.4 in a ``message``.

Office 365 connectors are retired; the Workflow "When a Teams webhook request is received"
posts the card, and renders card versions up to 1.4 only. A message must stay under 28 KB: the
alert list is cut with "…and N more" to fit. TextBlock and FactSet text takes a Markdown subset,
so event-derived text is backslash-escaped (no links, emphasis or lists can be injected), line
breaks are flattened and ``scheme://`` is broken so no bare URL becomes a link. The Workflows
webhook has no idempotency field: the key travels only in the ``Idempotency-Key`` HTTP header.
"""

from __future__ import annotations

from typing import Any

from alerts.channels.text import AlertText, clip, defang, describe, encode, headline, map_url
from schemas.alerts import Notification, Severity

MAX_BYTES = 28 * 1024
_BUDGET = MAX_BYTES - 1024  # room for the closing "and N more" line and the action
CARD_VERSION = "1.4"
_SPECIAL = set("\\`*_[]<>#~|")
_COLOR = {Severity.INFO: "Accent", Severity.WARNING: "Warning", Severity.CRITICAL: "Attention"}


def escape(text: str) -> str:
    """Untrusted text made inert in an Adaptive Card's Markdown subset."""
    flat = defang(" ".join(text.split()))
    out = "".join(f"\\{c}" if c in _SPECIAL else c for c in flat)
    return "\\" + out if out[:1] in ("-", "+") else out  # not a list item


def _block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def container(words: AlertText) -> dict[str, Any]:
    """One alert change: title, how it came about, and the facts."""
    color = "Good" if words.closing else _COLOR[words.severity]
    facts = [{"title": "Where", "value": escape(words.where)},
             {"title": "Since", "value": escape(words.since)},
             {"title": "Severity", "value": escape(words.severity_text)},
             {"title": "Owner", "value": escape(words.owner)}]
    facts += [{"title": escape(k), "value": escape(v)} for k, v in words.evidence]
    if words.cases:
        facts.append({"title": "Cases", "value": escape(words.cases)})
    return {"type": "Container", "separator": True, "spacing": "Medium", "items": [
        _block(f"{words.mark} **{escape(clip(words.title, 600))}**", color=color),
        _block(escape(words.status_line), isSubtle=True, spacing="None"),
        {"type": "FactSet", "facts": facts}]}


def build(notification: Notification) -> dict[str, Any]:
    """The Workflows webhook body for one notification (at most 28 KB as sent)."""
    body: list[dict[str, Any]] = [
        _block(escape(headline(notification)), size="Medium", weight="Bolder")]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": CARD_VERSION, "msteams": {"width": "Full"},
        "body": body}
    url = map_url(notification)
    if url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in Backlight", "url": url}]
    message = {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": card}]}
    size = len(encode(message))
    shown = 0
    for change in notification.changes:
        item = container(describe(change))
        item_size = len(encode(item)) + 1
        if size + item_size > _BUDGET:
            break
        body.append(item)
        size += item_size
        shown += 1
    if shown < len(notification.changes):
        body.append(_block(f"…and {len(notification.changes) - shown} more alert changes",
                           weight="Bolder"))
    body.append(_block(f"Backlight · notification {notification.id[:16]}", isSubtle=True,
                       size="Small"))
    return message
