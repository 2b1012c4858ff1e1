"""``backlight demo``: a local Kafka, three simulated processes, consumed into the embedded store."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from backlight import alerting, jobs, strict_json
from backlight.config import Settings
from backlight.mine import load_events, mine
from backlight.render_alerts import render_text
from ingest.broker import LocalBroker
from mining.dfg import discover_dfg
from schemas.printable import printable
from storage import EventStore, SQLiteStore, open_store


def drift_onset(cases: int) -> datetime:
    """When the demo's anomalies begin: about 60% into onboarding's simulated weeks (it
    takes some 40 new cases a working day), so there is a baseline before and a window after."""
    working_days = 0.6 * cases / 40
    return jobs.SIMULATION_START + timedelta(days=round(working_days * 7 / 5))


ROUND_DAYS = 14
"""Calendar days between two of the demo's evaluation rounds (10 business days)."""


def rounds(onset: datetime, end: datetime) -> list[datetime]:
    """When the demo evaluates a process: every 10 business days (two weeks) from a week
    before the anomalies' onset, and at the end of its simulated period (each round reads the
    rules' whole windows, so a drift opened between two rounds is dated by its onset all the
    same; half the rounds of a weekly schedule)."""
    first = min(onset - timedelta(days=7), end)
    step = timedelta(days=ROUND_DAYS)
    moments = (first + step * i for i in range(int((end - first) / step) + 1))
    return [moment for moment in moments if moment < end] + [end]


def _simulated_now(store_path: Path) -> dict[str, datetime]:
    """Each process's "now" for the demo: an hour after its last case arrived, the end of its
    simulated period (later events only drain work in progress, with no new cases: no state a
    running process is ever in). The processes cover different weeks: each has its own rate."""
    store = SQLiteStore(store_path)
    try:
        return {c.process: store.events(c.process).group_by("case_id")
                .agg(pl.col("timestamp").min()).select(pl.col("timestamp").max()).item()
                + timedelta(hours=1) for c in store.counts()}
    finally:
        store.close()


def run_demo(settings: Settings, workdir: Path, cases: int,
             echo: Callable[[str], object] = print, serve_port: int | None = None) -> None:
    """Run the whole path on this machine and print what landed where; then, unless
    ``serve_port`` is None, serve the web app over the store until Ctrl-C or SIGTERM."""
    workdir.mkdir(parents=True, exist_ok=True)
    store_path = (workdir / "backlight.db").resolve()
    for leftover in (store_path, store_path.with_name(store_path.name + "-wal"),
                     store_path.with_name(store_path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    broker = LocalBroker(workdir / "broker")
    echo("Starting a local Apache Kafka broker (the first run downloads it from Maven Central)...")
    t0 = time.monotonic()
    state = broker.start()
    echo(f"  Kafka {state.version} at {state.bootstrap} ({time.monotonic() - t0:.0f}s)")
    demo_settings = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "bootstrap_servers": state.bootstrap, "group_id": f"backlight-demo-{int(time.time())}"}),
        "store": settings.store.model_copy(update={"url": f"sqlite:///{store_path}"}),
    })
    try:
        echo(f"Simulating {cases} cases each of onboarding, payments and claims, with injected "
             "anomalies...")
        truth = workdir / "ground-truth.json"
        onset = drift_onset(cases)
        published = jobs.simulate(
            demo_settings, ["onboarding", "payments", "claims"], cases, seed=7,
            bottleneck="Risk review", bottleneck_since=onset, bottleneck_segment=("region", "east"),
            rework="Request missing documents,Documents received", rework_since=onset,
            stuck_after="Assessment", ground_truth=str(truth))
        echo(f"  injected from {onset.date()}: waits before Risk review x5 for region=east, "
             "documents requested again; cases stuck after Assessment")
        for process, (events, topic) in published.items():
            echo(f"  {process:<11} {events:>7} events -> {topic}")
        echo("Consuming into the embedded store (exits once caught up)...")
        t0 = time.monotonic()
        live = jobs.live_maps(demo_settings)
        stats = jobs.consume(demo_settings, exit_when_idle=2.0, live=live)
        took = time.monotonic() - t0
        echo(f"  {stats.stored} events stored, {stats.dead_letters} dead-lettered, "
             f"{stats.duplicates} duplicates ignored ({took:.1f}s)")
        store = open_store(demo_settings.store.url, demo_settings.store.session())
        try:
            echo("\nProcess       events    cases   live map (kept up to date by the consumer)")
            for row in store.counts():
                batch = discover_dfg(store.events(row.process)).counts()
                same = dict(live[row.process].edge_counts) == batch
                echo(f"  {row.process:<11} {row.events:>7} {row.cases:>8}   {len(batch)} paths, "
                     f"{live[row.process].open_cases} open cases held; "
                     + ("equal to the DFG mined from the store" if same
                        else "DIFFERS from the DFG mined from the store"))
            _fold_read_models(demo_settings, store, echo)
        finally:
            store.close()
        echo("\nDiscovering each process from the store...")
        maps = workdir / "maps"
        maps.mkdir(exist_ok=True)
        for process in ("onboarding", "payments", "claims"):
            frame = load_events(demo_settings, process)  # read once, rendered three ways
            written = []
            for fmt, view, suffix in (("svg", "frequency", ".frequency.svg"),
                                      ("svg", "performance", ".performance.svg"),
                                      ("json", "frequency", ".json")):
                path = maps / f"{process}{suffix}"
                mined = mine(demo_settings, process, fmt, view=view, frame=frame)  # type: ignore[arg-type]
                path.write_text(mined.text)
                written.append(path.name)
            echo(f"  {process:<11} {', '.join(written)}")
        echo("\nEvaluating the alert rules along each process's simulated weeks, every 10 "
             "business days from the anomalies' onset to the end of its period, with the state "
             "kept (as `backlight alerts run` would)...")
        found: list[dict[str, object]] = []
        for process, end in sorted(_simulated_now(store_path).items()):
            report = None
            for now in rounds(onset, end):
                report = alerting.evaluate(demo_settings, now, processes=[process])
                changes = ", ".join(f"{c.change.value} {printable(c.alert.subject)}"
                                    for c in report.changes)
                if changes and now != end:
                    echo(f"  {now.date()} {process}: {changes}")
            assert report is not None
            for note in report.notes:
                echo(f"  # {printable(note)}")
            echo(render_text(report).rstrip())
            found.extend(a.to_json() for a in report.alerts)
        alerts_file = workdir / "alerts.json"
        alerts_file.write_text(strict_json.dumps(found, indent=2, ensure_ascii=False) + "\n")
        if demo_settings.channels:
            delivered = alerting.deliver_outbox(demo_settings)
            echo(f"  delivered {delivered.sent}, failed {delivered.failed} (retried by "
                 "`backlight alerts run`)")
        echo(f"\nMaps:         {maps.resolve()}/ (open the .svg files in a browser)")
        echo(f"Store:        {store_path}")
        echo(f"Alerts:       {alerts_file.resolve()} (as `backlight alerts evaluate "
             "--format json` prints them)")
        echo(f"Ground truth: {truth.resolve()} (the anomalies the simulator injected)")
    finally:
        broker.stop()
        echo("Local broker stopped.")
    if serve_port is not None:
        from backlight.web.server import serve

        serve(demo_settings, settings.web.host, serve_port, on_ready=lambda url: echo(
            f"\nWeb app:      {url}/ (the processes, their maps and alerts; Ctrl-C stops it)"))


def _fold_read_models(settings: Settings, store: EventStore, echo: Callable[[str], object]) -> None:
    """Fold the stored events into the read models (what `GET /api/processes/NAME/figures` and
    `backlight figures` answer from) and show their counts beside the store's."""
    from backlight.read_models import ReadModels
    from storage import ReadModelTables

    echo("\nRead models (folded once; the figures API reads them, not the events)")
    t0 = time.monotonic()
    tables = ReadModelTables(settings.store.url, settings.store.session())
    try:
        models = ReadModels.for_settings(store, tables, settings)
        folded = models.catch_up()
        for row in store.counts():
            figures = models.figures(row.process)
            same = (figures.events, figures.cases) == (row.events, row.cases)
            echo(f"  {printable(row.process):<11} {figures.events:>7} {figures.cases:>8}   "
                 f"{tables.open_count(row.process)} not at an end activity, "
                 f"{len(figures.variants)} variants; "
                 + ("counts equal to the store's" if same else "counts DIFFER from the store's"))
    finally:
        tables.close()
    echo(f"  {folded} events folded ({time.monotonic() - t0:.1f}s)")
