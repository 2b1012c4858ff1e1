"""The closed loop's messages in every platform's format: acknowledged with an owner and an
action, a note, a confirmed resolution, a recurrence; user text escaped like event text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from chat_support import T0, make_alert

from alerts.channels import build_payload
from alerts.channels.text import encode
from schemas.alerts import AlertChange, AlertNote, Change, Notification, Severity, Status

HOSTILE = "<script>x</script> <!channel> *bold* [x](http://evil) @channel"
RAW = {"slack": ("<!channel>", "<script>", "*bold*"),
       "teams": ("*bold*", "[x](http://evil)", "http://evil", "<script>"),
       "mattermost": ("<!channel>", "<script>", "*bold*", "[x](http://evil)", "@channel"),
       "googlechat": ("<script>", "<!channel>", "http://evil")}
CHATS = tuple(RAW)


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


def changes(user: str = "clm-ops") -> dict[Change, AlertChange]:
    """One change of each closed-loop kind, ``user`` as the text people typed."""
    acked = make_alert(acknowledged_by="ann", acknowledged_at=T0, fix_owner=user,
                       action=f"second assessor ({user})")
    note = AlertNote(acked.key, "ann", T0 + timedelta(days=1), f"assessor hired {user}")
    resolved = make_alert(status=Status.CONFIRMED, resolved_at=T0 + timedelta(days=3),
                          confirmed_at=T0 + timedelta(days=10), fix_owner=user)
    recurred = make_alert(severity=Severity.CRITICAL, recurrences=1, previous={
        "first_seen": (T0 - timedelta(days=30)).isoformat(),
        "resolved_at": (T0 - timedelta(days=20)).isoformat(), "fix_owner": user,
        "action": f"overtime ({user})"})
    return {
        Change.ACKNOWLEDGED: AlertChange(Change.ACKNOWLEDGED, acked, T0),
        Change.NOTE: AlertChange(Change.NOTE, acked, note.at, note=note),
        Change.CONFIRMED: AlertChange(Change.CONFIRMED, resolved, T0 + timedelta(days=10),
                                      detail=f"Assessment-0: back to 0.8-1.1 business days, "
                                             f"3 business days after {user} took it on"),
        Change.RECURRED: AlertChange(Change.RECURRED, recurred, T0),
    }


def notification(change: AlertChange) -> Notification:
    return Notification(id="f" * 64, channel="chat", process="claims", owner="claims-team",
                        changes=(change,), created_at=T0)


WORDS = {
    Change.ACKNOWLEDGED: ("Acknowledged by ann", "fix owned by clm-ops: second assessor"),
    Change.NOTE: ("Note by ann", "assessor hired clm-ops"),
    Change.CONFIRMED: ("Confirmed resolved", "back to 0.8-1.1 business days",
                       "3 business days after clm-ops took it on"),
    Change.RECURRED: ("Recurred", "severity raised to critical", "fix owned by clm-ops",
                      "overtime"),
}


@pytest.mark.parametrize("kind", CHATS)
@pytest.mark.parametrize("change", list(WORDS))
def test_each_loop_change_reads_as_what_happened(kind: str, change: Change) -> None:
    """Each chat message says the change in words: who owns the fix and what is done, the
    note, what held and since when, what the earlier episode was."""
    text = json.dumps(build_payload(notification(changes()[change]), kind), ensure_ascii=False)
    for words in WORDS[change]:
        assert words in text, (kind, change, words)


@pytest.mark.parametrize("kind", CHATS)
def test_owner_action_and_note_text_are_escaped(kind: str) -> None:
    """What people type (owner, action, note) is as untrusted as event data: no mention, tag,
    link or emphasis survives in any platform's message."""
    for change in changes(HOSTILE).values():
        joined = "\n".join(texts(json.loads(encode(build_payload(notification(change), kind)))))
        for raw in RAW[kind]:
            assert raw not in joined, (kind, change.change, raw)


@pytest.mark.parametrize("kind", ["webhook", "kafka"])
def test_data_payloads_carry_the_note_and_the_confirmation(kind: str) -> None:
    """The generic webhook and the CloudEvent carry the note and the confirmation's sentence
    as data, with the alert's fix owner and action."""
    made = changes()
    noted = json.loads(encode(build_payload(notification(made[Change.NOTE]), kind)))
    confirmed = json.loads(encode(build_payload(notification(made[Change.CONFIRMED]), kind)))
    if kind == "webhook":
        noted, confirmed = noted["changes"][0], confirmed["changes"][0]
        assert noted["alert"]["fix_owner"] == "clm-ops"
    else:
        assert noted["type"] == "backlight.alert.note" and noted["data"]["fix_owner"] == "clm-ops"
        noted, confirmed = noted["data"], confirmed["data"]
    assert noted["note"]["text"] == "assessor hired clm-ops" and noted["note"]["by"] == "ann"
    assert "3 business days after clm-ops" in confirmed["detail"]
