"""A store for the alert page's tests: onboarding with a five-fold slowdown at a step whose
name is an HTML payload, evaluated along the days after its onset (fired, acknowledged with a
note, still firing), beside the hostile process of ``web_support`` (its stuck alerts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
from web_support import hostile_events, web_settings

from backlight import alerting
from backlight.config import Settings
from ingest.simulate import Anomalies, Bottleneck, simulate
from schemas.alerts import alert_key
from storage import SQLiteStore

AMS = ZoneInfo("Europe/Amsterdam")
SLOW = "<img src=x onerror=alert(1)>"
"""The slowed step's name (onboarding's Risk review, renamed): an HTML payload."""
ONSET = datetime(2026, 4, 27, 9, tzinfo=AMS)  # working day 80 of a simulation from 5 January
SLOW_KEY = alert_key("bottleneck", "onboarding", f"wait before {SLOW}")
ACK_NOTE = "Risk team <b>re-staffed</b>"


@dataclass(frozen=True)
class AlertSite:
    settings: Settings
    rounds: tuple[datetime, ...]
    """When the alerts were evaluated, oldest first."""
    acknowledged_at: datetime


def alert_site(path: Path) -> AlertSite:
    """Fill the store at ``path`` and evaluate its alerts: onboarding's on four days after the
    onset (an acknowledgement by alice between the second and the third), the hostile
    process's once."""
    sim = simulate("onboarding", 40 * 95, seed=7,
                   anomalies=Anomalies(bottleneck=Bottleneck("Risk review", ONSET, 5.0)))
    renamed = [msgspec.structs.replace(e, activity=SLOW) if e.activity == "Risk review" else e
               for e in sim.events]
    store = SQLiteStore(path)
    try:
        store.write(renamed)
        store.write(hostile_events())
        hostile_now = store.events("hostile")["timestamp"].max()
    finally:
        store.close()
    settings = web_settings(path)
    rounds = tuple(datetime(2026, 5, day, 18, tzinfo=AMS) for day in (11, 12, 13, 14))
    acknowledged = rounds[1] + timedelta(hours=1)
    for at in rounds:
        if at > acknowledged:
            break
        alerting.evaluate(settings, at, processes=["onboarding"])
    alerting.acknowledge(settings, SLOW_KEY, "alice", ACK_NOTE, now=acknowledged)
    for at in rounds[2:]:
        alerting.evaluate(settings, at, processes=["onboarding"])
    assert isinstance(hostile_now, datetime)
    alerting.evaluate(settings, hostile_now, processes=["hostile"])
    return AlertSite(settings, rounds, acknowledged)
