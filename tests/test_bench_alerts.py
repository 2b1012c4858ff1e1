"""Benchmark (on demand: pytest -m bench -s tests/test_bench_alerts.py): every alert rule on
BPIC 2012 from the store beside the mining summary alone; detection delay per rule on the
simulator; outbox throughput against a real local HTTP server. Each figure is printed beside
its target (the README's "Measured on these machines" rows) and fails when it misses it by a
wide margin (tests/bench_targets.py)."""

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
from bench_targets import Targets
from conftest import event_frame, shared_file

from alerts.calendar import WorkCalendar
from alerts.channels import ChannelSettings, payload_for
from alerts.delivery import HttpxTransport, deliver
from alerts.evaluate import run_rules
from alerts.registry import ProcessDefinition
from alerts.routing import route
from ingest.logfiles import read_log
from ingest.simulate import Anomalies, Bottleneck, ReworkLoop, simulate
from mining.frame import prepare
from mining.summary import summarize
from schemas.alerts import Alert, AlertChange, Change, Severity, Status
from storage import Outbox, open_store

pytestmark = pytest.mark.bench
AMS = ZoneInfo("Europe/Amsterdam")
ONSET = datetime(2026, 4, 27, 9, 0, tzinfo=AMS)
CALENDAR = WorkCalendar()


def interleaved(runs: int, first: Callable[[], object],
                second: Callable[[], object]) -> tuple[float, float]:
    """The fastest of ``runs`` timings of each of two functions run in turn, so that both see
    the same load (the machine is shared; one-sided bursts otherwise decide the ratio)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for func, took in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            func()
            took.append(time.perf_counter() - started)
    return min(times[0]), min(times[1])


def best_of(runs: int, func: Callable[[], object]) -> float:
    """The fastest of ``runs`` timings in seconds (least disturbed by other load)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


# README: "every alert rule on BPIC 2012 from the store, beside the mining summary: 0.62-0.83 s
# vs 0.86-0.93 s (0.72-0.92x)". The ratio is measured side by side, interleaved; the seconds are
# absolute (wider margin).
RULES_RATIO, RULES_S, SUMMARY_S = 1.0, 0.83, 0.93
# README: "detection delay ... bottleneck 4-10 (8 for Risk review, also when confined to
# region=east); hand-off 7 (into Risk review); a new loop 3-4; repeated document requests 9-12;
# throughput 20" business days. The simulation is seeded, so these are exact; the margin
# leaves room for tuning the rules.
DELAY_TARGETS = {"bottleneck": 10, "bottleneck (segment)": 10, "handoff": 7, "throughput": 20,
                 "rework (loop)": 4, "rework (requests)": 12}
DELAY_MARGIN = 1.5
# README: "outbox -> a local webhook: 190-284 notifications/s on SQLite".
OUTBOX_PER_S = 190.0


@pytest.mark.shared_data
def test_rules_on_bpic_beside_the_summary(tmp_path: Path) -> None:
    """Every rule on BPIC 2012 from the store takes at most as long as the mining summary
    (fails above 1.5x), each within 3x of the README's seconds; prints all three."""
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
    summary, rules = interleaved(5, lambda: summarize(events, "onboarding"),
                                 lambda: run_rules(definition, events, now))
    found = run_rules(definition, events, now)
    store.close()
    targets = Targets()
    print(f"\nBPIC 2012, {frame.height} events: store read {read:.2f} s; {len(found)} findings: "
          + ", ".join(sorted({f.rule for f in found})))
    print("  " + targets.at_most("every rule / the summary", rules / summary, RULES_RATIO,
                                 1.5 * RULES_RATIO, "x"))
    print("  " + targets.at_most("every rule", rules, RULES_S, 3 * RULES_S, " s"))
    print("  " + targets.at_most("mining summary", summary, SUMMARY_S, 3 * SUMMARY_S, " s"))
    targets.check()


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
    """Per rule, business days from the injected onset to the first firing, each within 1.5x
    of the README's (stuck has no onset: a stopped case is listed once idle past its
    threshold, see test_alerts_stuck)."""
    scenarios = [
        ("bottleneck", "onboarding", Anomalies(bottleneck=Bottleneck("Risk review", ONSET, 5.0))),
        ("bottleneck (segment)", "onboarding", Anomalies(bottleneck=Bottleneck(
            "Risk review", ONSET, 5.0, segment=("region", "east")))),
        ("handoff", "onboarding", Anomalies(bottleneck=Bottleneck("Risk review", ONSET, 5.0))),
        ("throughput", "onboarding", Anomalies(bottleneck=Bottleneck("Risk review", ONSET, 10.0))),
        ("rework (loop)", "onboarding", Anomalies(rework=ReworkLoop(
            ("KYC/AML screening", "Risk review"), 0.1, since=ONSET))),
        ("rework (requests)", "onboarding", Anomalies(rework=ReworkLoop(
            ("Request missing documents", "Documents received"), 0.15, since=ONSET))),
    ]
    lines = []
    targets = Targets()
    for label, process, anomalies in scenarios:
        rule = label.split(" ")[0]
        delay = first_firing(process, anomalies, rule)
        target = DELAY_TARGETS[label]
        lines.append(f"  {label:<22} {process:<11} " + targets.at_most(
            "business days", float("inf") if delay is None else delay, target,
            DELAY_MARGIN * target, spec=".0f"))
    print("\nDetection delay (onset -> first firing, evaluated at each day's close; inf: not "
          "within 40 days):\n" + "\n".join(lines))
    targets.check()


class Sink(BaseHTTPRequestHandler):
    """Answers 200 to every POST, like a healthy chat endpoint."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_outbox_throughput_to_a_local_server(tmp_path: Path) -> None:
    """The outbox sends at least a third of the README's notifications per second to a real
    local webhook (an absolute rate on a shared machine: a wide margin); prints the rate."""
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
    targets = Targets()
    print(f"\nOutbox -> local webhook: {report.sent} notifications in {took:.2f} s; "
          + targets.at_least("rate", report.sent / took, OUTBOX_PER_S, OUTBOX_PER_S / 3,
                             "/s", spec=".0f"))
    targets.check()
