"""Time to act served from a real store: ``GET /api/time-to-act`` (and per process), the
overview and process pages, and the gauges on ``/metrics``, all from the scripted history
(act_support) recorded in a real SQLite store and read by a real server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from act_support import at, history, states
from prometheus_client.parser import text_string_to_metric_families

from backlight.config import Settings, load
from backlight.web.server import running
from backlight.web.service import WebService
from schemas.alerts import AlertChange, Change
from storage import SQLiteAlertState

HOSTILE = 'pay"ments\\<b>\nx'


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A store holding the scripted history plus one alert of a process with a hostile name,
    on the scripted calendar (UTC, 09:00-17:00)."""
    path = tmp_path_factory.mktemp("act") / "store.db"
    state = SQLiteAlertState(path)
    try:
        changes = history()
        odd = replace(changes[5].alert, key=f"stuck/{HOSTILE}/C", process=HOSTILE)
        changes.append(AlertChange(Change.FIRING, odd, at(1)))
        state.save([*states().values(), odd])
        state.record_changes(changes)
    finally:
        state.close()
    config = tmp_path_factory.mktemp("cfg") / "backlight.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{path}"\n'
                      '[alerts]\ntime_to_act_window = "3650 days"\n'
                      '[alerts.calendar]\ntimezone = "UTC"\nopens = "09:00"\ncloses = "17:00"\n'
                      '[[processes]]\nname = "claims"\nowner = "ana"\n'
                      '[[processes]]\nname = "payments"\nowner = "bo"\n')
    return load(config)


def test_the_api_serves_the_known_answers(settings: Settings) -> None:
    """Overall: resolved after 12 and 9 business hours (median 10.5), one of two resolved
    episodes recurred; per owner ops and ana; per process claims alone for the process API."""
    with running(settings) as base:
        data = httpx.get(f"{base}/api/time-to-act", timeout=30).json()
        claims = httpx.get(f"{base}/api/processes/claims/time-to-act", timeout=30).json()
        missing = httpx.get(f"{base}/api/processes/nope/time-to-act", timeout=30)
    assert data["unit"] == "business hours" and data["window"]["days"] == 3650
    assert data["overall"]["episodes"] == 5
    assert data["overall"]["resolve"] == {"count": 2, "median_hours": 10.5, "p90_hours": 11.7}
    assert data["overall"]["recurred_share"] == 0.5
    assert data["owners"]["ana"]["acknowledge"]["median_hours"] == 2.0
    assert data["owners"]["unowned"]["never_acknowledged"] == 3
    assert set(data["processes"]) == {"claims", "payments", HOSTILE}
    assert claims["overall"]["episodes"] == 3 and set(claims["processes"]) == {"claims"}
    assert claims["overall"]["confirm"]["median_hours"] == 40.0
    assert missing.status_code == 404


def test_metrics_export_gauges_per_process_with_escaped_labels(settings: Settings) -> None:
    """/metrics parses with Prometheus's own parser; the hostile process name comes back whole
    (its quote, backslash and line feed escaped in the text); claims' time to resolve has its
    median and p90, payments (nothing resolved) has none."""
    with running(settings) as base:
        text = httpx.get(f"{base}/metrics", timeout=30).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    resolve = "backlight_alert_time_to_resolve_business_hours"
    assert samples[(resolve, (("process", "claims"), ("quantile", "0.5")))] == 10.5
    assert samples[(resolve, (("process", "claims"), ("quantile", "0.9")))] == pytest.approx(11.7)
    assert not any(name == resolve and dict(labels)["process"] == "payments"
                   for name, labels in samples)
    assert samples[("backlight_alert_episodes", (("process", HOSTILE),))] == 1
    assert samples[("backlight_alert_episodes_recurred", (("process", "claims"),))] == 1
    assert samples[("backlight_alert_episodes_unacknowledged", (("process", "payments"),))] == 1
    assert 'process="pay\\"ments\\\\<b>\\nx"' in text


def test_the_pages_show_time_to_act(settings: Settings, tmp_path: Path) -> None:
    """The overview lists time to act per process and per owner, the hostile name escaped; the
    process page lists its owners."""
    with running(settings) as base:
        overview = httpx.get(f"{base}/", timeout=60)
        page = httpx.get(f"{base}/processes/claims", timeout=60)
    assert overview.status_code == 200, overview.text[:500]
    assert 'id="time-to-act"' in overview.text and 'id="act-owners"' in overview.text
    assert "<b>" not in overview.text.split('id="time-to-act"')[1]
    assert "pay&#34;ments" in overview.text or "pay&quot;ments" in overview.text
    assert "10.5 h" in overview.text
    assert page.status_code == 200, page.text[:500]
    section = page.text.split('id="time-to-act"')[1].split("</section>")[0]
    assert "ops" in section and "ana" in section and "40.0 h" in section


def test_days_narrows_the_window_and_says_so(settings: Settings) -> None:
    """?days= back to Sunday 1 November: B's first episode (fired the Friday before) is not
    counted, A resolved in 12 business hours is; the answer says since when; a bad value is
    refused."""
    days = (datetime.now(UTC) - at(-1)).total_seconds() / 86400
    with running(settings) as base:
        data = httpx.get(f"{base}/api/time-to-act", params={"days": days}, timeout=30).json()
        bad = httpx.get(f"{base}/api/time-to-act", params={"days": 0}, timeout=30)
    assert data["overall"]["episodes"] == 4  # A, C, B's return and the hostile one
    assert data["overall"]["resolve"] == {"count": 1, "median_hours": 12.0, "p90_hours": 12.0}
    assert "ops" not in data["owners"]
    assert data["window"]["since"] > at(-1, 8).isoformat()
    assert bad.status_code == 422


def test_figures_are_recomputed_only_when_the_history_changes(settings: Settings) -> None:
    """Reading time to act again serves the kept figures; a new change in the history makes
    the next read recompute them (one more episode)."""
    svc = WebService(settings)
    try:
        first = svc.time_to_act()
        assert svc.time_to_act() is first and svc.act.computed == 1
        late = replace(states()["stuck/payments/C"], key="stuck/payments/D", subject="D")
        svc.state.record_changes([AlertChange(Change.FIRING, late, at(3))])
        again = svc.time_to_act()
        assert svc.act.computed == 2 and again.overall.episodes == first.overall.episodes + 1
    finally:
        svc.close()
