"""Mattermost incoming webhook: a Markdown ``text`` plus Slack-style attachments, one per alert.

Mattermost takes Slack-style attachments (colour bar, title, fields), not Block Kit. Its text
is Markdown and it links Slack-style ``<url|label>``: event-derived text is backslash-escaped,
``@`` is fenced with a zero-width space (no ``@channel``/``@all`` mention can be injected) and
``scheme://`` is broken. Mattermost has no idempotency field: the key travels only in the
``Idempotency-Key`` HTTP header.
"""

from __future__ import annotations

from typing import Any

from alerts.channels.text import AlertText, clip, defang, describe, headline, map_url
from schemas.alerts import Notification

MAX_ATTACHMENTS = 30
MAX_TEXT = 4000
_SPECIAL = set("\\`*_[]()<>#~|!")


def escape(text: str) -> str:
    """Untrusted text made inert in Mattermost Markdown."""
    out = "".join(f"\\{c}" if c in _SPECIAL else c for c in defang(text))
    out = out.replace("@", "@\u200b")
    return "\\" + out if out[:1] in ("-", "+") else out


def attachment(words: AlertText) -> dict[str, Any]:
    """One alert change as a Slack-style attachment."""
    fields = [{"short": False, "title": "Where", "value": escape(words.where)},
              {"short": True, "title": "Since", "value": escape(words.since)},
              {"short": True, "title": "Severity", "value": escape(words.severity_text)},
              {"short": True, "title": "Owner", "value": escape(words.owner)}]
    fields += [{"short": True, "title": escape(k), "value": escape(v)} for k, v in words.evidence]
    if words.cases:
        fields.append({"short": False, "title": "Cases", "value": escape(words.cases)})
    item: dict[str, Any] = {
        "fallback": escape(clip(words.title, 300)), "color": words.color,
        "title": f"{words.mark} {escape(clip(words.title, 600))}",
        "text": escape(words.status_line), "fields": fields}
    if words.url:
        item["title_link"] = words.url
    return item


def build(notification: Notification) -> dict[str, Any]:
    """The Mattermost webhook body for one notification."""
    changes = notification.changes
    shown = changes[:MAX_ATTACHMENTS]
    text = f"**{escape(headline(notification))}**"
    if len(shown) < len(changes):
        text += f"\n…and {len(changes) - len(shown)} more alert changes"
        url = map_url(notification)
        if url:
            text += f" ([open in Backlight]({url}))"
    text += f"\n_notification {notification.id[:16]}_"
    return {"username": "Backlight", "text": clip(text, MAX_TEXT),
            "attachments": [attachment(describe(c)) for c in shown]}
