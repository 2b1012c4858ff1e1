"""Payload builders: each platform's documented shape and limits, wording, and escaping."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from chat_support import MAP, T0, make_alert, make_notification

from alerts.channels import BUILDERS, build_payload, cloudevent, googlechat, mattermost, slack, teams, webhook
from alerts.channels.text import encode
from schemas.alerts import AlertChange, Change, Notification

HOSTILE = "<script>alert(1)</script> <!channel> *bold* [x](http://evil) @channel"


def texts(payload: Any) -> Iterator[str]:
    """Every string in a JSON payload."""
    if isinstance(payload, str):
        yield payload
    elif isinstance(payload, dict):
        for value in payload.values():
            yield from texts(value)
    elif isinstance(payload, list):
        for value in payload:
            yield from texts(value)


def big(n: int = 80) -> Notification:
    """A notification with ``n`` alerts, each with long text and plenty of evidence."""
    evidence = {f"figure_{k}": "x" * 100 for k in range(10)}
    return make_notification([make_alert(i, summary="s" * 900, evidence=evidence) for i in range(n)])


def test_slack_respects_block_and_text_limits() -> None:
    """80 alerts: at most 50 blocks, section texts <= 3,000, header <= 150, the rest counted."""
    body = slack.build(big())
    blocks = body["blocks"]
    assert len(blocks) <= 50
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    assert blocks[0]["text"]["type"] == "plain_text"
    sections = [b for b in blocks if b["type"] == "section"]
    assert all(len(b["text"]["text"]) <= 3000 for b in sections)
    alert_sections = [b for b in sections if "Where:" in b["text"]["text"]]
    assert f"and {80 - len(alert_sections)} more" in sections[-1]["text"]["text"]
    assert blocks[-1]["type"] == "context"
    assert body["text"]


def test_slack_one_huge_alert_is_cut_to_3000() -> None:
    """A single alert whose text would exceed 3,000 characters is cut, not rejected."""
    body = slack.build(make_notification([make_alert(summary="&" * 5000)]))
    text = body["blocks"][1]["text"]["text"]
    assert len(text) <= 3000 and text.endswith("…")
    assert "&am…" not in text and "&amp;" in text  # no half entity at the cut


def test_teams_is_adaptive_card_1_4_within_28_kb() -> None:
    """80 alerts: one Adaptive Card 1.4 attachment, at most 28 KB as sent, rest counted."""
    body = teams.build(big())
    assert len(encode(body)) <= 28 * 1024
    assert body["type"] == "message" and len(body["attachments"]) == 1
    attachment = body["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    shown = [b for b in card["body"] if b["type"] == "Container"]
    assert 0 < len(shown) < 80
    assert any(f"and {80 - len(shown)} more" in b.get("text", "") for b in card["body"])
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in Backlight",
                                "url": MAP}]


def test_teams_without_map_url_has_no_action() -> None:
    """No base URL configured: no Action.OpenUrl (an empty link would be rejected)."""
    card = teams.build(make_notification([make_alert(url=None)]))["attachments"][0]["content"]
    assert "actions" not in card


def test_google_chat_cards_v2_within_widget_and_size_limits() -> None:
    """80 alerts: cardsV2 with at most 100 widgets and 32,000 bytes, threaded per process."""
    body = googlechat.build(big())
    assert len(encode(body)) <= 32_000
    card = body["cardsV2"][0]["card"]
    widgets = [w for s in card["sections"] for w in s["widgets"]]
    assert len(widgets) <= 100
    alert_sections = [s for s in card["sections"] if "header" in s]
    assert f"and {80 - len(alert_sections)} more" in json.dumps(card)
    assert body["thread"] == {"threadKey": "backlight-claims"}
    assert {"openLink": {"url": MAP}} in [b["onClick"] for w in widgets if "buttonList" in w
                                          for b in w["buttonList"]["buttons"]]


def test_google_chat_small_message_shows_every_alert() -> None:
    """Three alerts fit: three alert sections, no "more" line."""
    card = googlechat.build(make_notification([make_alert(i) for i in range(3)]))["cardsV2"][0]["card"]
    assert len([s for s in card["sections"] if "header" in s]) == 3
    assert "more alert changes" not in json.dumps(card)


def test_mattermost_attachments_with_colour_and_fields() -> None:
    """Slack-style attachments (capped at 30), coloured by severity, green when resolved."""
    body = mattermost.build(big(40))
    assert len(body["attachments"]) == 30 and "and 10 more" in body["text"]
    first = body["attachments"][0]
    assert first["color"] == "#E8A317" and first["title_link"] == MAP
    assert [f["title"] for f in first["fields"][:4]] == ["Where", "Since", "Severity", "Owner"]
    resolved = mattermost.build(make_notification([make_alert()], Change.RESOLVED))
    assert resolved["attachments"][0]["color"] == "#2EB886"


def test_generic_webhook_carries_id_and_alert_json() -> None:
    """The generic body: idempotency id, process, owner, and each change with Alert.to_json()."""
    alert = make_alert()
    note = make_notification([alert])
    body = webhook.build(note)
    assert body["id"] == note.id and body["process"] == "claims" and body["owner"] == "claims-team"
    assert body["changes"] == [{"change": "firing", "at": T0.isoformat(), "alert": alert.to_json()}]
    json.dumps(body)  # serialisable as is


def test_cloudevent_structured_mode() -> None:
    """One CloudEvent 1.0 per change: type by change, subject the alert key, data the alert."""
    alert = make_alert()
    event = cloudevent.build(make_notification([alert], Change.RESOLVED))
    assert event == {"specversion": "1.0", "id": "f" * 64, "source": "backlight",
                     "type": "backlight.alert.resolved", "subject": alert.key,
                     "time": "2026-11-02T09:00:00Z", "datacontenttype": "application/json",
                     "data": alert.to_json()}
    with pytest.raises(ValueError, match="one alert change"):
        cloudevent.build(make_notification([make_alert(0), make_alert(1)]))


@pytest.mark.parametrize("kind", ["slack", "teams", "mattermost", "googlechat"])
def test_message_says_what_where_since_how_bad_who_evidence_link(kind: str) -> None:
    """Every chat message names the summary, process, subject, segment, since, severity,
    owner, evidence and the map link."""
    text = json.dumps(build_payload(make_notification([make_alert()]), kind), ensure_ascii=False)
    for expected in ("6.1 business days", "claims", "Assessment-0", "region=east", "2026-10-19",
                     "warning", "claims-team", "42", "c-1", "backlight.example/maps/claims"):
        assert expected in text, (kind, expected)


@pytest.mark.parametrize("kind", ["slack", "teams", "mattermost", "googlechat"])
def test_no_owner_is_said(kind: str) -> None:
    """A process without an owner is announced as having "no owner"."""
    note = make_notification([make_alert(owner=None)], owner=None)
    assert "no owner" in json.dumps(build_payload(note, kind))


@pytest.mark.parametrize("kind", ["slack", "teams", "mattermost", "googlechat"])
def test_changes_are_worded_differently(kind: str) -> None:
    """Firing, repeat, escalated and resolved each read differently."""
    worded = {}
    for change, words in [(Change.FIRING, "Started firing at"), (Change.REPEAT, "reminder"),
                          (Change.ESCALATED, "not acknowledged by"),
                          (Change.RESOLVED, "Resolved at")]:
        alert = make_alert(resolved_at=T0 if change is Change.RESOLVED else None)
        text = json.dumps(build_payload(make_notification([alert], change), kind),
                          ensure_ascii=False)
        assert words in text, (kind, change)
        worded[change] = text
    assert len(set(worded.values())) == 4


def _hostile_notification() -> Notification:
    alert = make_alert(subject=HOSTILE, summary=f"wait before {HOSTILE}: 6 days",
                       evidence={"activity": HOSTILE}, segment={"region": HOSTILE})
    return make_notification([alert])


def test_slack_escapes_event_text() -> None:
    """Activity names cannot mention @channel, inject HTML/links or bold text in Slack."""
    body = slack.build(_hostile_notification())
    joined = "\n".join(texts(body))
    assert "<!channel>" not in joined and "<script>" not in joined and "*bold*" not in joined
    assert "&lt;!channel&gt;" in joined and "&lt;script&gt;" in joined
    mrkdwn = [b["text"] for b in body["blocks"] if b["type"] == "section"]
    mrkdwn += body["blocks"][-1]["elements"]
    assert all(t["type"] == "mrkdwn" and t["verbatim"] is True for t in mrkdwn)


def test_mattermost_escapes_event_text() -> None:
    """No Slack-style link, Markdown link, emphasis or @channel mention survives in Mattermost."""
    joined = "\n".join(texts(mattermost.build(_hostile_notification())))
    for raw in ("<!channel>", "<script>", "*bold*", "[x](http://evil)", "@channel", "http://evil"):
        assert raw not in joined, raw
    assert "\\*bold\\*" in joined and "\\[x\\]" in joined


def test_teams_escapes_event_text() -> None:
    """No Markdown link or emphasis can be injected into the Adaptive Card."""
    joined = "\n".join(texts(teams.build(_hostile_notification())))
    for raw in ("*bold*", "[x](http://evil)", "http://evil", "<script>"):
        assert raw not in joined, raw
    assert "\\*bold\\*" in joined and "\\[x\\]" in joined


def test_google_chat_escapes_event_text() -> None:
    """Card text is HTML-escaped: no tag or link from event data renders in Google Chat."""
    body = googlechat.build(_hostile_notification())
    joined = "\n".join(texts(body))
    for raw in ("<script>", "<!channel>", "http://evil"):
        assert raw not in joined, raw
    assert "&lt;script&gt;" in joined


def test_every_channel_type_has_a_builder() -> None:
    """Each configurable channel type maps to a builder; an unknown type is refused."""
    assert set(BUILDERS) == {"slack", "teams", "mattermost", "googlechat", "webhook", "kafka"}
    with pytest.raises(ValueError, match="unknown channel type"):
        build_payload(make_notification([make_alert()]), "pager")


CONTROLS = "\x1b[31mred\x07 \x7f\x9b"


def _raw_controls(text: str) -> set[str]:
    """The raw C0 (other than line breaks), DEL and C1 characters in a text."""
    return {c for c in text if (ord(c) < 0x20 and c not in "\n\r") or 0x7F <= ord(c) < 0xA0}


@pytest.mark.parametrize("kind", ["slack", "teams", "mattermost", "googlechat"])
def test_chat_text_shows_control_characters_as_escapes(kind: str) -> None:
    """An alert whose subject, summary, cases, owner and process hold ESC, BEL, DEL and CSI gives
    valid JSON whose display text carries none of them raw, only their visible escapes."""
    alert = make_alert(subject=CONTROLS, summary=f"wait before {CONTROLS}", owner=CONTROLS,
                       evidence={"activity": CONTROLS}, segment={"region": CONTROLS})
    alert = dataclasses.replace(alert, cases=(CONTROLS,))
    notification = Notification(id="f" * 64, channel="chat", process=f"claims{CONTROLS}",
                                owner=CONTROLS, changes=(AlertChange(Change.FIRING, alert, T0),),
                                created_at=T0)
    body = json.loads(encode(build_payload(notification, kind)))
    shown = list(texts(body))
    assert all(not _raw_controls(t) for t in shown), [t for t in shown if _raw_controls(t)]
    assert any("x1b" in t and "31mred" in t and "x07" in t for t in shown)


@pytest.mark.parametrize("kind", ["webhook", "kafka"])
def test_data_payloads_keep_control_characters_as_valid_json(kind: str) -> None:
    """The generic webhook and the CloudEvent carry the alert as data: valid JSON holding the
    exact text, control characters escaped by JSON itself."""
    notification = make_notification([make_alert(subject=CONTROLS, summary=CONTROLS)])
    raw = encode(build_payload(notification, kind))
    assert b"\x1b" not in raw and b"\x07" not in raw
    assert CONTROLS in list(texts(json.loads(raw)))
