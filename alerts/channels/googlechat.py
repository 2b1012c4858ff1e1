"""Google Chat webhook: a ``cardsV2`` card, one section per alert, threaded per process.

Limits (Google Chat API reference): at most 100 widgets per card and 32,000 bytes per message;
the alert list is cut with "…and N more" to fit. Card text fields take Chat's HTML subset
(``<b>``, ``<a href>``, ``<font>``), so event-derived text is HTML-escaped and ``scheme://`` is
broken. ``thread.threadKey`` keeps one process's messages in one thread; delivery adds
``messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`` to the URL, which Chat requires
for it. Chat webhooks have no idempotency field: the key travels only in the
``Idempotency-Key`` HTTP header.
"""

from __future__ import annotations

import html
import re
from typing import Any

from alerts.channels.text import AlertText, clip, defang, describe, encode, headline, map_url
from schemas.alerts import Notification
from schemas.printable import printable

MAX_WIDGETS = 100
MAX_BYTES = 32_000
_BUDGET = MAX_BYTES - 1500
_PER_ALERT = 2
_CLOSING = 2  # "and N more" and the map button
REPLY_OPTION = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"


def escape(text: str) -> str:
    """Untrusted text made inert in Chat's card HTML subset."""
    return html.escape(defang(text), quote=True)


def _plain(text: str) -> str:
    """Text for the message's own ``text`` field (Chat markup there: *, _, ~, `, <...>)."""
    return re.sub(r"[<>*_~`]", "", text)


def thread_key(process: str) -> str:
    """One thread per process."""
    return f"backlight-{printable(process)}"[:200]


def section(words: AlertText) -> dict[str, Any]:
    """One alert change: a headline widget and a paragraph of facts."""
    lines = [escape(words.status_line),
             f"<b>Where:</b> {escape(words.where)}",
             f"<b>Since:</b> {escape(words.since)} · <b>Severity:</b> {escape(words.severity_text)}"
             f" · <b>Owner:</b> {escape(words.owner)}"]
    if words.evidence:
        lines.append("<b>Evidence:</b> " + "; ".join(f"{escape(k)}: {escape(v)}"
                                                     for k, v in words.evidence))
    if words.cases:
        lines.append(f"<b>Cases:</b> {escape(words.cases)}")
    return {"header": escape(clip(words.where, 200)), "widgets": [
        {"decoratedText": {"topLabel": escape(f"{words.change.value} · {words.severity_text}"),
                           "text": f"{words.mark} <b>{escape(clip(words.title, 600))}</b>",
                           "wrapText": True}},
        {"textParagraph": {"text": "<br>".join(lines)}}]}


def build(notification: Notification) -> dict[str, Any]:
    """The Chat webhook body for one notification (at most 100 widgets, 32,000 bytes)."""
    title = headline(notification)
    sections: list[dict[str, Any]] = []
    message: dict[str, Any] = {
        "text": _plain(title),
        "cardsV2": [{"cardId": f"backlight-{notification.id[:16]}", "card": {
            "header": {"title": clip(_plain(title), 200),
                       "subtitle": f"notification {notification.id[:16]}"},
            "sections": sections}}],
        "thread": {"threadKey": thread_key(notification.process)}}
    size = len(encode(message)) + 600  # the closing section
    room = (MAX_WIDGETS - _CLOSING) // _PER_ALERT
    for change in notification.changes[:room]:
        item = section(describe(change))
        item_size = len(encode(item)) + 1
        if size + item_size > _BUDGET:
            break
        sections.append(item)
        size += item_size
    closing: list[dict[str, Any]] = []
    if len(sections) < len(notification.changes):
        more = len(notification.changes) - len(sections)
        closing.append({"textParagraph": {"text": f"<b>…and {more} more alert changes</b>"}})
    url = map_url(notification)
    if url:
        closing.append({"buttonList": {"buttons": [
            {"text": "Open in Backlight", "onClick": {"openLink": {"url": url}}}]}})
    if closing:
        sections.append({"widgets": closing})
    return message
