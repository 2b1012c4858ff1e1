"""`backlight serve --consume` as an ops engineer runs it: one process on a real broker that
ingests, serves the pages and the API over what it stored, counts it in /metrics, is ready once
its lag is known, and stops cleanly on SIGTERM."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from conftest import popen_backlight, write_config
from prometheus_client.parser import text_string_to_metric_families

from backlight.config import load
from backlight.jobs import simulate

pytestmark = pytest.mark.kafka


def _metric(text: str, name: str) -> float:
    """The sum of a metric family's samples named ``name`` (all label sets)."""
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name)


def test_serve_with_consume_ingests_serves_and_stops_on_sigterm(tmp_path: Path,
                                                               kafka_bootstrap: str,
                                                               unique: str) -> None:
    """Events published to the topic show in the API and the overview page, /metrics counts
    them as consumed and stored, /readyz turns ready, and SIGTERM ends the process with 0."""
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, tmp_path / "s.db",
                       [(f"claims.{unique}", "claims")], f"g-{unique}")
    events = simulate(load(cfg), ["claims"], 60, seed=3)["claims"][0]
    with popen_backlight("serve", "--config", str(cfg), "--port", "0", "--consume") as proc:
        assert proc.stderr is not None
        line = ""
        for line in proc.stderr:
            if line.startswith("Backlight at"):
                break
        found = re.search(r"(http://\S+?)/ ", line)
        assert found, line
        url = found.group(1)
        deadline = time.monotonic() + 120
        listed: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            listed = httpx.get(f"{url}/api/processes", timeout=30).json()
            if any(p["name"] == "claims" and p["events"] == events for p in listed):
                break
            time.sleep(1)
        assert [p["events"] for p in listed if p["name"] == "claims"] == [events]
        # the lag is the consumer's as of its last fetch: 0 at the latest one poll after the
        # last batch was stored
        ready = httpx.get(f"{url}/readyz", timeout=30)
        while ready.json().get("lag") != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            ready = httpx.get(f"{url}/readyz", timeout=30)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        page = httpx.get(f"{url}/", timeout=30)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode == 0
    assert ready.status_code == 200 and ready.json()["lag"] == 0
    assert _metric(metrics, "backlight_events_consumed_total") == events
    assert _metric(metrics, "backlight_events_stored_total") == events
    assert page.status_code == 200 and "claims" in page.text
