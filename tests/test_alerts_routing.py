"""Routing of alert changes to channels, grouping into notifications, and the channel/route settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from alerts.channels import ChannelSettings, by_name
from alerts.errors import AlertConfigError
from alerts.routing import RouteSettings, notification_id, route
from schemas.alerts import Alert, AlertChange, Change, Severity, Status

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SECRET_URL = "ftp://hooks.example/T000/B000/s3cr3t-t0ken"


def alert(process: str = "claims", rule: str = "bottleneck", subject: str = "Assessment",
          severity: Severity = Severity.WARNING, owner: str | None = "ana", **state: Any) -> Alert:
    """A firing alert."""
    return Alert(key=f"{rule}/{process}/{subject}", rule=rule, process=process, subject=subject,
                 severity=severity, status=Status.FIRING, summary="s", evidence={}, segment={},
                 since=date(2026, 10, 19), cases=(), owner=owner, first_seen=T0, last_seen=T0,
                 fired_at=T0, **state)


def change(a: Alert, kind: Change = Change.FIRING, at: datetime = T0) -> AlertChange:
    """One change of one alert."""
    return AlertChange(kind, a, at)


def channels(*specs: str) -> dict[str, ChannelSettings]:
    """Channels from ``name:type`` specs."""
    out = []
    for spec in specs:
        name, kind = spec.split(":")
        url = None if kind == "kafka" else f"https://hooks.example/{name}"
        out.append(ChannelSettings.model_validate({"name": name, "type": kind, "url": url}))
    return by_name(out)


def routes(*entries: dict[str, Any]) -> list[RouteSettings]:
    """Routes from their TOML-like dicts."""
    return [RouteSettings.model_validate(e) for e in entries]


def sent(notes: list[Any]) -> dict[str, list[str]]:
    """Channel -> the alert keys it hears about (with change)."""
    out: dict[str, list[str]] = {}
    for n in notes:
        out.setdefault(n.channel, []).extend(f"{c.alert.key}:{c.change.value}" for c in n.changes)
    return out


def test_without_routes_every_channel_hears_everything_grouped() -> None:
    """No routes: each channel gets one message per (process, owner) with all its changes."""
    chans = channels("team:slack", "ops:webhook")
    changes = [change(alert(subject="A")), change(alert(subject="B")),
               change(alert(process="payments", owner="bo", subject="C"))]
    notes = route(changes, [], chans, T0)
    assert [(n.channel, n.process, n.owner, len(n.changes)) for n in notes] == [
        ("team", "claims", "ana", 2), ("ops", "claims", "ana", 2),
        ("team", "payments", "bo", 1), ("ops", "payments", "bo", 1)]
    assert all(n.created_at == T0 for n in notes)


def test_owner_splits_groups_within_a_process() -> None:
    """Two owners of alerts in one process get separate messages."""
    notes = route([change(alert(subject="A", owner="ana")), change(alert(subject="B", owner=None))],
                  [], channels("team:slack"), T0)
    assert sorted((n.owner or "-", len(n.changes)) for n in notes) == [("-", 1), ("ana", 1)]


def test_first_matching_route_stops_unless_continue() -> None:
    """Routes are tried in order: a match with continue=false ends the search."""
    chans = channels("claims:slack", "all:teams", "audit:webhook")
    rs = routes({"channels": ["claims"], "process": "claims", "continue": False},
                {"channels": ["all"]},
                {"channels": ["audit"], "rule": "stale_*"})
    changes = [change(alert(subject="A")),
               change(alert(process="payments", rule="stale_review", subject="def"))]
    assert sent(route(changes, rs, chans, T0)) == {
        "claims": ["bottleneck/claims/A:firing"],
        "all": ["stale_review/payments/def:firing"],
        "audit": ["stale_review/payments/def:firing"]}


def test_min_severity_filters() -> None:
    """A route with min_severity=critical ignores warnings."""
    rs = routes({"channels": ["pager"], "min_severity": "critical"}, {"channels": ["team"]})
    chans = channels("pager:webhook", "team:slack")
    notes = route([change(alert(subject="W")),
                   change(alert(subject="C", severity=Severity.CRITICAL))], rs, chans, T0)
    assert sent(notes) == {"pager": ["bottleneck/claims/C:firing"],
                           "team": ["bottleneck/claims/W:firing", "bottleneck/claims/C:firing"]}


def test_escalation_route_hears_escalations_and_their_resolution_only() -> None:
    """Escalation routes get ESCALATED changes and the RESOLVED of escalated alerts, not the rest."""
    rs = routes({"channels": ["team"]}, {"channels": ["boss"], "escalation": True})
    chans = channels("team:slack", "boss:teams")
    escalated = alert(subject="E", escalated_at=T0)
    changes = [change(alert(subject="F")), change(escalated, Change.ESCALATED),
               change(alert(subject="R"), Change.RESOLVED),
               change(escalated, Change.RESOLVED, T0 + timedelta(days=1))]
    assert sent(route(changes, rs, chans, T0)) == {
        "team": ["bottleneck/claims/F:firing", "bottleneck/claims/E:escalated",
                 "bottleneck/claims/R:resolved", "bottleneck/claims/E:resolved"],
        "boss": ["bottleneck/claims/E:escalated", "bottleneck/claims/E:resolved"]}


def test_kafka_channel_gets_one_notification_per_change() -> None:
    """A Kafka channel gets one notification (one CloudEvent) per change; chat gets one."""
    chans = channels("bus:kafka", "team:slack")
    changes = [change(alert(subject=s)) for s in "ABC"]
    notes = route(changes, [], chans, T0)
    assert [len(n.changes) for n in notes if n.channel == "bus"] == [1, 1, 1]
    assert [len(n.changes) for n in notes if n.channel == "team"] == [3]
    assert len({n.id for n in notes}) == 4


def test_notification_id_is_deterministic() -> None:
    """Same channel and changes give the same id in any order; another channel or time differs."""
    a, b = change(alert(subject="A")), change(alert(subject="B"))
    assert notification_id("team", [a, b]) == notification_id("team", [b, a])
    assert notification_id("team", [a, b]) != notification_id("ops", [a, b])
    later = change(alert(subject="A"), at=T0 + timedelta(hours=1))
    assert notification_id("team", [a]) != notification_id("team", [later])
    first = route([a, b], [], channels("team:slack"), T0)
    again = route([a, b], [], channels("team:slack"), T0 + timedelta(minutes=5))
    assert [n.id for n in first] == [n.id for n in again]


def test_route_to_unknown_channel_is_a_config_error() -> None:
    """A route naming a channel that is not configured is refused, naming it."""
    with pytest.raises(AlertConfigError, match=r"routes\[0\]\.channels: no channel named 'nope'"):
        route([change(alert())], routes({"channels": ["nope"]}), channels("team:slack"), T0)


def test_unknown_channel_type_lists_valid_types() -> None:
    """An unknown channel type fails validation, listing the valid ones."""
    with pytest.raises(ValidationError) as info:
        ChannelSettings.model_validate({"name": "x", "type": "pager", "url": "https://h/x"})
    assert "slack, teams, mattermost, googlechat, webhook, kafka" in str(info.value)


def test_bad_url_is_refused_without_echoing_it() -> None:
    """A non-http URL is refused; the message does not contain the (secret) value."""
    with pytest.raises(ValidationError) as info:
        ChannelSettings.model_validate({"name": "x", "type": "slack", "url": SECRET_URL})
    message = str(info.value) + repr(info.value.errors())
    assert "http:// or https://" in message
    assert "s3cr3t" not in message and "hooks.example" not in message


def test_url_required_except_for_kafka() -> None:
    """HTTP channels need a url; a kafka channel takes a topic and refuses a url."""
    with pytest.raises(ValidationError, match="url: required for a teams channel"):
        ChannelSettings.model_validate({"name": "x", "type": "teams"})
    bus = ChannelSettings.model_validate({"name": "bus", "type": "kafka"})
    assert bus.topic == "backlight.alerts"
    with pytest.raises(ValidationError, match="takes no url"):
        ChannelSettings.model_validate({"name": "bus", "type": "kafka", "url": "https://h/x"})


def test_secrets_are_hidden_in_settings_repr() -> None:
    """The URL and header values never show in the settings' repr."""
    chan = ChannelSettings.model_validate({"name": "hook", "type": "webhook",
                                           "url": "https://h.example/p/s3cr3t",
                                           "headers": {"Authorization": "Bearer t0ken"}})
    assert "s3cr3t" not in repr(chan) and "t0ken" not in repr(chan)
    assert chan.headers["Authorization"].get_secret_value() == "Bearer t0ken"


def test_duplicate_channel_names_are_refused() -> None:
    """Two channels with one name are refused (routes name channels)."""
    with pytest.raises(ValueError, match="'a' is configured twice"):
        channels("a:slack", "a:teams")


def test_route_settings_keys() -> None:
    """Routes read ``continue`` from the config, default to match-all, refuse unknown keys."""
    r = RouteSettings.model_validate({"channels": ["a"], "continue": False})
    assert (r.process, r.rule, r.min_severity, r.escalation, r.continue_) == (
        "*", "*", Severity.INFO, False, False)
    with pytest.raises(ValidationError):
        RouteSettings.model_validate({"channels": ["a"], "severity": "critical"})
    with pytest.raises(ValidationError):
        RouteSettings.model_validate({"channels": []})
