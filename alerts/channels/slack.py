"""Slack incoming webhook: a Block Kit message (header, one section per alert, context).

Limits (Slack's Block Kit reference): at most 50 blocks, a section's text at most 3,000
characters, a header's plain text at most 150. Event-derived text is escaped for mrkdwn:
``&``, ``<``, ``>`` become entities (so ``<!channel>`` and ``<http://x|y>`` stay text), the
formatting characters ``* _ ~ ` `` are fenced with zero-width spaces, and every mrkdwn object
is ``verbatim`` (no automatic links, mentions or channel names). Slack incoming webhooks have
no idempotency field: the key travels only in the ``Idempotency-Key`` HTTP header.
"""

from __future__ import annotations

from typing import Any

from alerts.channels.text import AlertText, clip, describe, headline, map_url
from schemas.alerts import Notification
from schemas.printable import printable

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
_ZW = "\u200b"


def escape(text: str) -> str:
    """Untrusted text made inert in Slack mrkdwn."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for char in "*_~`":
        text = text.replace(char, f"{_ZW}{char}{_ZW}")
    return text


def _link(url: str, label: str) -> str:
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{label}>"


def _clip(text: str, limit: int) -> str:
    """Cut escaped mrkdwn without leaving half an entity behind."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def section_text(words: AlertText, map_link: str | None = None) -> str:
    """One alert as a mrkdwn section text (at most 3,000 characters); its own link only when
    it differs from the message's link (``map_link``, the first alert's page, shown once at
    the end)."""
    lines = [f"{words.mark} *{escape(clip(words.title, 600))}*", escape(words.status_line)]
    if words.url and words.url != map_link:
        lines.append(_link(words.url, "Open in Backlight"))
    lines.append(f"*Where:* {escape(words.where)}")
    lines.append(f"*Since:* {escape(words.since)}   *Severity:* {escape(words.severity_text)}"
                 f"   *Owner:* {escape(words.owner)}")
    if words.evidence:
        lines.append("*Evidence:* " + "; ".join(f"{escape(k)}: {escape(v)}" for k, v in words.evidence))
    if words.cases:
        lines.append(f"*Cases:* {escape(words.cases)}")
    return _clip("\n".join(lines), MAX_SECTION)


def build(notification: Notification) -> dict[str, Any]:
    """The Slack webhook body for one notification."""
    title = headline(notification)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title, MAX_HEADER)}}]
    changes = notification.changes
    url = map_url(notification)
    room = MAX_BLOCKS - 2  # the header and the closing context
    shown = changes if len(changes) <= room else changes[: room - 1]
    for change in shown:
        blocks.append({"type": "section", "text": _mrkdwn(section_text(describe(change), url))})
    if len(shown) < len(changes):
        more = f"…and {len(changes) - len(shown)} more alert changes"
        blocks.append({"type": "section", "text": _mrkdwn(more)})
    context = (f"{_link(url, 'Open in Backlight')} · " if url else "") + (
        f"Backlight · process {escape(printable(notification.process))} · owner "
        f"{escape(printable(notification.owner or 'no owner'))} · notification {notification.id[:16]}")
    blocks.append({"type": "context", "elements": [_mrkdwn(context)]})
    return {"text": escape(title), "blocks": blocks, "unfurl_links": False, "unfurl_media": False}
