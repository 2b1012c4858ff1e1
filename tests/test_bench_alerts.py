"""Benchmark (on demand: pytest -m bench -s tests/test_bench_alerts.py): every alert rule on
BPIC 2012 from the store beside the mining summary alone; detection delay per rule on the
simulator; outbox throughput against a real local HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from conftest import event_frame, shared_file

from alerts.calendar import WorkCalendar
from alerts.channels import ChannelSettings, payload_for
from alerts.delivery import HttpxTransport, deliver
from alerts.evaluate import run_rules
from alerts.outbox import Outbox
from alerts.registry import ProcessDefinition
from alerts.routing import route
from ingest.logfiles import read_log
from ingest.simulate import Anomalies, Bottleneck, ReworkLoop, simulate
from ingest.store import open_store
from mining.frame import prepare
from mining.summary import summarize
from schemas.alerts import Alert, AlertChange, Change, Severity, Status

pytestmark = pytest.mark.bench
AMS = ZoneInfo("Europe/Amsterdam")
ONSET = datetime(2026, 4, 27, 9, 0, tzinfo=AMS)
CALENDAR = WorkCalendar()


def best_of(runs: int, func: Callable[[], object]) -> float:
    """The fastest of ``runs`` timings in seconds (least disturbed by other load)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


@pytest.mark.shared_data
def test_rules_on_bpic_beside_the_summary(tmp_path: Path) -> None:
    """Prints the seconds every rule takes on BPIC 2012 from the store beside the summary's."""
    path = shared_file("logs/bpic2012.xes.gz")
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    store.write(list(read_log(path, "onboarding")))
    frame = store.events("onboarding")
    events = prepare(frame)
    now = frame.select(pl.col("timestamp").max()).item() + timedelta(hours=1)
    definition = ProcessDefinition("onboarding", owners=("owner@example.com",),
                                   last_reviewed=now.date(),
                                   end_activities=("A_DECLINED", "A_CANCELLED",
                                                   "A_REGISTERED", "W_Valideren aanvraag"))
    read = best_of(2, lambda: store.events("onboarding"))
    summary = best_of(3, lambda: summarize(events, "onboarding"))
    rules = best_of(3, lambda: run_rules(definition, events, now))
    found = run_rules(definition, events, now)
    store.close()
    print(f"\nBPIC 2012, {frame.height} events: store read {read:.2f} s; mining summary "
          f"{summary:.2f} s; every rule {rules:.2f} s = {rules / summary:.2f}x the summary "
          f"(target <= 1x); {len(found)} findings: "
          + ", ".join(sorted({f.rule for f in found})))


def first_firing(process: str, anomalies: Anomalies, rule: str, days: int = 140,
                 end_activities: tuple[str, ...] = ()) -> int | None:
    """Business days from ONSET until ``rule`` first fires, evaluating at every day's close."""
    per_day = {"onboarding": 40, "payments": 60, "claims": 25}[process]
    sim = simulate(process, per_day * days, seed=3, anomalies=anomalies)
    frame = event_frame(sim.events)
    definition = ProcessDefinition(process, owners=("o@example.com",),
                                   end_activities=end_activities or tuple(
                                       sim.ground_truth["end_activities"]))
    day = ONSET.replace(hour=17, minute=30)
    for _ in range(40):
        upto = prepare(frame.filter(pl.col("timestamp") < day.astimezone(UTC)))
        if any(f.rule == rule for f in run_rules(definition, upto, day)):
            return CALENDAR.count_business_days(ONSET.date(), day.date())
        day += timedelta(days=3 if day.weekday() == 4 else 1)
    return None


def test_detection_delay_per_rule() -> None:
    """Prints, per rule, business days from the injected onset to the first firing (stuck has
    no onset: a stopped case is listed once idle past its threshold, see test_alerts_stuck)."""
    scenarios = [
        ("bottleneck", "onboarding", Anomalies(bottleneck=Bottleneck("Risk review", ONSET, 5.0))),
        ("bottleneck (segment)", "onboarding", Anomalies(bottleneck=Bottleneck(
            "Risk review", ONSET, 5.0, segment=("region", "east")))),
        ("throughput", "onboarding", Anomalies(bottleneck=Bottleneck("Risk review", ONSET, 10.0))),
        ("rework", "onboarding", Anomalies(rework=ReworkLoop(
            ("Request missing documents", "Documents received"), 0.15, since=ONSET))),
    ]
    lines = []
    for label, process, anomalies in scenarios:
        rule = label.split(" ")[0]
        delay = first_firing(process, anomalies, rule)
        lines.append(f"  {label:<22} {process:<11} "
                     + (f"{delay} business days" if delay is not None else "not within 40 days"))
    print("\nDetection delay (onset -> first firing, evaluated at each day's close):\n"
          + "\n".join(lines))


class Sink(BaseHTTPRequestHandler):
    """Answers 200 to every POST, like a healthy chat endpoint."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_outbox_throughput_to_a_local_server(tmp_path: Path) -> None:
    """Prints notifications per second from the outbox to a real local webhook."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    channel = ChannelSettings.model_validate({"type": "webhook", "name": "hook", "url": url})
    now = datetime.now(UTC)
    changes = [AlertChange(Change.FIRING, Alert(
        key=f"stuck/p{i}/x", rule="stuck", process=f"p{i}", subject="x",
        severity=Severity.WARNING, status=Status.FIRING, summary="s", evidence={}, segment={},
        since=None, cases=(), owner=None, first_seen=now, last_seen=now), now)
        for i in range(500)]
    notes = route(changes, (), {"hook": channel}, now)
    outbox = Outbox(tmp_path / "o.db")
    outbox.enqueue(notes, payload_for({"hook": channel}))
    transport = HttpxTransport()
    started = time.perf_counter()
    report = deliver(outbox, {"hook": channel}, {"http": transport}, lambda: datetime.now(UTC),
                     pace_s={})
    took = time.perf_counter() - started
    transport.close()
    outbox.close()
    server.shutdown()
    assert report.sent == len(notes)
    print(f"\nOutbox -> local webhook: {report.sent} notifications in {took:.2f} s = "
          f"{report.sent / took:.0f}/s")
