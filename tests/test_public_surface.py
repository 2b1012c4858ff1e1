"""The packages' public surfaces: every exported name exists, and alerts runs end to end on it."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

import pytest

import alerts
from mining.frame import empty_frame, prepare
from schemas.alerts import Change


@pytest.mark.parametrize("package", ["ingest", "mining", "alerts"])
def test_every_exported_name_exists(package: str) -> None:
    """Each name in a package's __all__ can be imported from it."""
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_alerts_public_surface_goes_from_rules_to_a_chat_payload() -> None:
    """A process without an owner: run_rules finds it, advance fires it, route addresses it to
    a channel and build_payload turns it into that platform's message."""
    now = datetime(2026, 11, 25, 9, tzinfo=UTC)
    definition = alerts.ProcessDefinition("claims", last_reviewed=now.date())
    findings = alerts.run_rules(definition, prepare(empty_frame()), now)
    assert [f.key for f in findings] == ["no_owner/claims/owner"]
    result = alerts.advance({}, findings, now=now, policy=alerts.LifecyclePolicy(),
                            owners={"claims": None}, evaluated={"claims"})
    assert [c.change for c in result.changes] == [Change.FIRING]
    channel = alerts.ChannelSettings.model_validate(
        {"type": "slack", "name": "ops", "url": "https://hooks.example/T/B/x"})
    [note] = alerts.route(result.changes, (), {"ops": channel}, now)
    payload = alerts.build_payload(note, channel.type)
    assert "no accountable owner" in str(payload)
