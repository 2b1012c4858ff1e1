"""The closed loop end to end, on a simulated drift that is fixed and comes back: evaluated every
two business days with its state kept, delivered through the outbox to real local webhooks.

Claims' wait before Assessment is slowed eight-fold from business day 60 to 66 (then fixed)
and again from day 82 on (it comes back). The first episode fires, is acknowledged with an
owner and an action, gets a note, resolves, and is confirmed five business days later, to the
team's channel and to management's escalation channel; the return, within 30 days of the
resolution, reopens it as recurred, linked to the first episode, one severity step up. Each
message reaches its webhook once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from chat_support import Clock, Receiver, start
from detection_support import CAL, evening

from backlight import alerting
from backlight.config import Settings, load
from ingest.simulate import Anomalies, Bottleneck, simulate
from schemas.event import CaseEvent
from storage import SQLiteStore

KEY = "bottleneck/claims/wait before Assessment"
ONSET, FIX, RETURN = 60, 66, 82  # business days after 5 January 2026
ACTION = "second assessor on Assessment"


def drift_fixed_and_back() -> list[CaseEvent]:
    """Claims for 130 business days, Assessment's wait slowed eight-fold in [ONSET, FIX) and
    from RETURN on: the cases the second slowdown touches are taken from a simulation with that
    one, the rest from one with the first (the same seed gives every case the same path and
    times unless an anomaly touches it)."""
    first = simulate("claims", 25 * 130, seed=2, anomalies=Anomalies(
        bottleneck=Bottleneck("Assessment", evening(ONSET), 8.0, until=evening(FIX))))
    again = simulate("claims", 25 * 130, seed=2, anomalies=Anomalies(
        bottleneck=Bottleneck("Assessment", evening(RETURN), 8.0)))
    slowed = (set(again.ground_truth["anomalies"]["bottleneck"]["cases"])
              - set(first.ground_truth["anomalies"]["bottleneck"]["cases"]))
    events = [e for e in first.events if e.case_id not in slowed]
    events += [e for e in again.events if e.case_id in slowed]
    return sorted(events, key=lambda e: (e.time_us, e.case_id))


def settings_for(tmp_path: Path, receiver: Receiver) -> Settings:
    """Claims owned by claims-lead; bottleneck alerts to the team's webhook, confirmations and
    escalations also to management's; the default confirm_after and recurrence_window."""
    db = tmp_path / "store.db"
    store = SQLiteStore(db)
    try:
        store.write(drift_fixed_and_back())
    finally:
        store.close()
    path = tmp_path / "backlight.toml"
    path.write_text(f"""
[store]
url = "sqlite:///{db}"

[alerts]
resolve_after = "1 day"

[[processes]]
name = "claims"
owner = "claims-lead"

[[channels]]
type = "webhook"
name = "team"
url = "{receiver.base}/team"

[[channels]]
type = "webhook"
name = "management"
url = "{receiver.base}/management"

[[alerts.routes]]
rule = "bottleneck"
channels = ["team"]

[[alerts.routes]]
escalation = true
channels = ["management"]
""")
    return load(path, environ={})


def received(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    """The changes of KEY each channel's webhook accepted, in arrival order."""
    out = []
    for request in receiver.requests:
        if request.path == path and request.outcome == "accepted":
            out += [c for c in json.loads(request.body)["changes"] if c["alert"]["key"] == KEY]
    return out


@pytest.fixture()
def receiver() -> Any:
    """A real local webhook endpoint (its own clock: deliveries follow the rounds)."""
    r = start(Clock(datetime(2026, 1, 5, tzinfo=UTC)))
    yield r
    r.close()


def test_a_fixed_drift_is_confirmed_and_its_return_recurs(tmp_path: Path,
                                                          receiver: Receiver) -> None:
    """Fired, acknowledged by ann for clm-ops with an action, noted, resolved, confirmed after
    five business days (to the team and to management), then back within the window: recurred,
    linked to what was done the first time, severity raised; every message delivered once."""
    settings = settings_for(tmp_path, receiver)
    kinds: list[tuple[int, str]] = []
    for day in range(ONSET, 100, 2):
        now = evening(day)
        receiver.clock.now = now
        acted = any(k == "acknowledged" for _, k in kinds)
        fired = any(k == "firing" for _, k in kinds)
        if fired and not acted:  # the round after it fired: taken on, and a first note
            alerting.acknowledge(settings, KEY, "ann", "", now=now, owner="clm-ops",
                                 action=ACTION)
            alerting.add_note(settings, KEY, "ann", "backlog down to <12> cases", now=now)
        report = alerting.evaluate(settings, now, processes=["claims"])
        kinds += [(day, c.change.value) for c in report.changes if c.alert.key == KEY]
        alerting.deliver_outbox(settings, now=lambda: receiver.clock.now)
    print("\nchanges of", KEY, kinds)

    team = received(receiver, "/team")
    assert [c["change"] for c in team] == [
        "firing", "note", "acknowledged", "resolved", "confirmed", "recurred"]
    by_kind = {c["change"]: c for c in team}
    acked = by_kind["acknowledged"]["alert"]
    assert (acked["acknowledged_by"], acked["fix_owner"], acked["action"]) == (
        "ann", "clm-ops", ACTION)
    assert by_kind["note"]["note"]["text"] == "backlog down to <12> cases"

    resolved_at = datetime.fromisoformat(by_kind["resolved"]["alert"]["resolved_at"])
    confirmed = by_kind["confirmed"]
    confirmed_at = datetime.fromisoformat(confirmed["alert"]["confirmed_at"])
    assert CAL.between(resolved_at, confirmed_at) >= 5 * CAL.day_seconds
    assert CAL.between(resolved_at, confirmed_at) < 7 * CAL.day_seconds  # the first round after
    print("confirmation:", confirmed["detail"])
    assert "wait before Assessment: back to " in confirmed["detail"]
    assert "business days after clm-ops took it on" in confirmed["detail"]
    assert [c["change"] for c in received(receiver, "/management")] == ["confirmed"]

    recurred = by_kind["recurred"]["alert"]
    first_severity = by_kind["firing"]["alert"]["severity"]
    assert (recurred["recurrences"], recurred["status"]) == (1, "firing")
    assert (first_severity, recurred["severity"]) == ("warning", "critical")
    back_at = datetime.fromisoformat(recurred["fired_at"])
    assert (back_at - resolved_at).days < 30
    assert recurred["previous"]["fix_owner"] == "clm-ops"
    assert recurred["previous"]["action"] == ACTION
    assert datetime.fromisoformat(recurred["previous"]["resolved_at"]) == resolved_at
    assert not recurred["acknowledged"]

    keys = [r.key for r in receiver.requests if r.outcome]
    assert len(keys) == len(set(keys))  # every notification accepted once
    assert all(r.outcome == "accepted" for r in receiver.requests)
