"""The weekly digest in each channel's own format, within its limits. Pure.

Slack: Block Kit (a header, a section per digest section, a context; at most 50 blocks and
3,000 characters per section text). Teams: one Adaptive Card 1.4 (under 28 KB as sent).
Mattermost: Markdown text (at most 4,000 characters). Google Chat: a ``cardsV2`` card (at most
100 widgets, 32,000 bytes). Generic webhook: the digest as JSON with its id. Kafka: a CloudEvent
``backlight.digest.weekly`` whose subject is the route. A section lists at most ``max_items``
alerts and then "…and N more"; when a message would still exceed its platform's limit, fewer are
listed per section until it fits. Event-derived text (process names, summaries, owners) is
escaped with each platform's own escaping (alerts/channels/) after control characters are made
visible (``printable``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any

from alerts.channels import googlechat, mattermost, slack, teams
from alerts.channels.cloudevent import SOURCE, SPECVERSION
from alerts.channels.text import clip, encode
from alerts.digest import REWORK_DAYS, SECTIONS, Digest, Item
from schemas.printable import printable

EVENT_TYPE = "backlight.digest.weekly"
Escape = Callable[[str], str]


def item_text(item: Item) -> str:
    """One alert of a section as a line of plain text (unescaped)."""
    when = item.at.strftime("%a %d %b %H:%M %Z").strip() if item.at else "unknown"
    parts = [f"[{item.severity}] {item.process}: {clip(item.summary, 300)}",
             f"owner {item.owner or 'none'}", when]
    if item.overdue:
        parts.append("OVERDUE")
    if item.impact is not None:
        parts.append(f"impact {item.impact.score:,.1f} ({item.impact.cases:,.0f} cases x "
                     f"{item.impact.days:.1f} business days)")
    return printable(" · ".join(parts))


def title(digest: Digest) -> str:
    """The digest's headline."""
    return printable(f"Backlight weekly digest, {digest.week.label}: {digest.route}")


def _lines(digest: Digest, name: str, keep: int, escape: Escape) -> list[str]:
    items = digest.section(name)
    shown = [escape(item_text(i)) for i in items[:keep]]
    if len(items) > len(shown):
        shown.append(f"…and {len(items) - len(shown)} more")
    return shown or ["none"]


def _note() -> str:
    return (f"Impact: cases affected x extra business days (rework counts each extra round as "
            f"{REWORK_DAYS:g} business day).")


def _slack(digest: Digest, notification_id: str, keep: int) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {
        "type": "plain_text", "text": clip(title(digest), slack.MAX_HEADER)}}]
    for name, heading in SECTIONS:
        n = len(digest.section(name))
        text = f"*{heading}* ({n})\n" + "\n".join(
            f"• {line}" for line in _lines(digest, name, keep, slack.escape))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "verbatim": True,
                                                   "text": text}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "verbatim": True,
                   "text": f"{_note()} Backlight · digest {notification_id[:16]}"}]})
    return {"text": slack.escape(title(digest)), "blocks": blocks, "unfurl_links": False,
            "unfurl_media": False}


def _slack_fits(body: dict[str, Any]) -> bool:
    blocks = body["blocks"]
    return len(blocks) <= slack.MAX_BLOCKS and all(
        len(b["text"]["text"]) <= slack.MAX_SECTION for b in blocks if b["type"] == "section")


def _teams(digest: Digest, notification_id: str, keep: int) -> dict[str, Any]:
    body: list[dict[str, Any]] = [{"type": "TextBlock", "text": teams.escape(title(digest)),
                                   "wrap": True, "size": "Medium", "weight": "Bolder"}]
    for name, heading in SECTIONS:
        body.append({"type": "TextBlock", "wrap": True, "weight": "Bolder", "separator": True,
                     "text": f"{heading} ({len(digest.section(name))})"})
        body.extend({"type": "TextBlock", "wrap": True, "spacing": "None", "text": f"- {line}"}
                    for line in _lines(digest, name, keep, teams.escape))
    body.append({"type": "TextBlock", "wrap": True, "isSubtle": True, "size": "Small",
                 "text": f"{_note()} Backlight · digest {notification_id[:16]}"})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": teams.CARD_VERSION, "msteams": {"width": "Full"},
            "body": body}
    return {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
        "content": card}]}


def _mattermost(digest: Digest, notification_id: str, keep: int) -> dict[str, Any]:
    parts = [f"#### {mattermost.escape(title(digest))}"]
    for name, heading in SECTIONS:
        parts.append(f"**{heading}** ({len(digest.section(name))})")
        parts.extend(f"- {line}" for line in _lines(digest, name, keep, mattermost.escape))
    parts.append(f"_{_note()} digest {notification_id[:16]}_")
    return {"username": "Backlight", "text": "\n".join(parts)}


def _googlechat(digest: Digest, notification_id: str, keep: int) -> dict[str, Any]:
    sections = [{"header": heading + f" ({len(digest.section(name))})", "widgets": [
        {"textParagraph": {"text": "<br>".join(
            f"• {line}" for line in _lines(digest, name, keep, googlechat.escape))}}]}
        for name, heading in SECTIONS]
    sections.append({"widgets": [{"textParagraph": {"text": googlechat.escape(_note())}}]})
    plain = title(digest).replace("<", "").replace(">", "")
    return {"text": plain, "cardsV2": [{"cardId": f"digest-{notification_id[:16]}", "card": {
        "header": {"title": clip(googlechat.escape(plain), 200),
                   "subtitle": f"digest {notification_id[:16]}"},
        "sections": sections}}],
        "thread": {"threadKey": f"backlight-digest-{notification_id[:16]}"}}


def _widgets(body: dict[str, Any]) -> int:
    return sum(len(s["widgets"]) for s in body["cardsV2"][0]["card"]["sections"])


_CHAT: dict[str, tuple[Callable[[Digest, str, int], dict[str, Any]],
                       Callable[[dict[str, Any]], bool]]] = {
    "slack": (_slack, _slack_fits),
    "teams": (_teams, lambda b: len(encode(b)) <= teams.MAX_BYTES),
    "mattermost": (_mattermost, lambda b: len(b["text"]) <= mattermost.MAX_TEXT),
    "googlechat": (_googlechat, lambda b: _widgets(b) <= googlechat.MAX_WIDGETS
                   and len(encode(b)) <= googlechat.MAX_BYTES),
}


def render(digest: Digest, channel_type: str, notification_id: str,
           max_items: int = 10) -> dict[str, Any]:
    """The body a channel of this type is sent for the digest, within the platform's limits."""
    if channel_type == "webhook":
        return {"id": notification_id, "type": "digest", **digest.to_json()}
    if channel_type == "kafka":
        return {"specversion": SPECVERSION, "id": notification_id, "source": SOURCE,
                "type": EVENT_TYPE, "subject": digest.route,
                "time": digest.week.end.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "datacontenttype": "application/json", "data": digest.to_json()}
    try:
        build, fits = _CHAT[channel_type]
    except KeyError:
        raise ValueError(f"unknown channel type {channel_type!r}") from None
    for keep in range(max_items, -1, -1):
        body = build(digest, notification_id, keep)
        if fits(body):
            return body
    return body  # nothing listed at all: the headings and counts alone


def plain_text(digest: Digest, max_items: int = 10) -> str:
    """The digest as plain text (``backlight alerts digest`` prints it)."""
    out = [title(digest)]
    for name, heading in SECTIONS:
        out.append(f"\n{heading} ({len(digest.section(name))})")
        out.extend(f"  - {line}" for line in _lines(digest, name, max_items, lambda t: t))
    out.append(f"\n{_note()}")
    return "\n".join(out) + "\n"
