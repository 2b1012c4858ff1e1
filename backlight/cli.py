"""The ``backlight`` command line: thin wrappers that load the config and call the jobs."""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from datetime import datetime
from pathlib import Path

import click

from backlight import logs
from backlight.cli_options import config_option, errors_exit, settings
from schemas.printable import printable

_config_option = config_option
_errors_exit = errors_exit
_settings = settings

# Each command imports what it runs when it runs (the jobs, Kafka, the web app, the alerts), so
# that `backlight mine` loads only the config, the store and the mining core.
_ELSEWHERE = {"alerts": "backlight.cli_alerts", "review": "backlight.cli_alerts",
              "serve": "backlight.cli_serve", "doctor": "backlight.cli_doctor",
              "rebuild": "backlight.cli_read_models", "figures": "backlight.cli_read_models"}
"""The top-level commands defined in other modules, and where."""


class _Commands(click.Group):
    """The top-level group; the commands defined in other modules load when run or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_ELSEWHERE])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        home = _ELSEWHERE.get(cmd_name)
        if home is None:
            return super().get_command(ctx, cmd_name)
        command: click.Command = getattr(importlib.import_module(home), cmd_name)
        return command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def main(log_level: str) -> None:
    """Backlight: watch back-office processes from their event data."""
    logs.setup(log_level.upper())


@main.group()
def broker() -> None:
    """A local single-node Apache Kafka (KRaft) for development, demos and tests."""


@broker.command("start")
@_config_option
@_errors_exit
def broker_start(config_path: str | None) -> None:
    """Start the local broker (resolving Kafka from Maven Central once) and print its address."""
    from backlight import jobs

    state = jobs.local_broker(_settings(config_path)).start()
    click.echo(state.bootstrap)
    click.echo(f"# Kafka {state.version} is running (pid {state.pid}); to use it:\n"
               f"# export BACKLIGHT_KAFKA__BOOTSTRAP_SERVERS={state.bootstrap}", err=True)


@broker.command("stop")
@_config_option
@_errors_exit
def broker_stop(config_path: str | None) -> None:
    """Stop the local broker."""
    from backlight import jobs

    stopped = jobs.local_broker(_settings(config_path)).stop()
    click.echo("stopped" if stopped else "no local broker was running")


@broker.command("status")
@_config_option
@_errors_exit
def broker_status(config_path: str | None) -> None:
    """Say whether the local broker runs, and where; exit 3 when it does not."""
    from backlight import jobs

    state = jobs.local_broker(_settings(config_path)).state()
    if state is None:
        click.echo("not running")
        sys.exit(3)
    click.echo(f"running: {state.bootstrap} (Kafka {state.version}, pid {state.pid}, "
               f"{state.directory})")


@main.command()
@_config_option
@click.option("--exit-when-idle", type=float, default=None, metavar="SECONDS",
              help="Exit once caught up and no message came for SECONDS.")
@click.option("--alerts", "with_alerts", is_flag=True,
              help="Also evaluate the alert rules once caught up (at most every [alerts] "
              "every) and deliver them, off the ingest path.")
@click.option("--read-models", "with_read_models", is_flag=True,
              help="Also fold each stored batch into the read models the pages and the API "
              "read (off the ingest path; any number of consumers may do it at once).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve /metrics, /healthz and /readyz for this consumer on PORT (0 picks "
              "a free one; the address is printed on stderr).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="Address the metrics port listens on (0.0.0.0 in a container).")
@_errors_exit
def consume(config_path: str | None, exit_when_idle: float | None, with_alerts: bool,
            with_read_models: bool, metrics_port: int | None, metrics_host: str) -> None:
    """Run the consumers: Kafka -> validate -> store; bad messages to <topic>.dlq."""
    from backlight import jobs
    from backlight.signals import stop_on_signals

    settings = _settings(config_path)
    stop = threading.Event()
    metrics = None
    # SIGTERM/SIGINT from here on finish the batch in hand, commit and exit 0.
    with stop_on_signals(stop), contextlib.ExitStack() as running:
        if metrics_port is not None:
            from backlight.metrics import Metrics
            from backlight.web.ops import serving

            metrics = Metrics()
            url = running.enter_context(serving(settings.store.url, metrics, metrics_host,
                                                metrics_port, stopping=stop.is_set))
            click.echo(f"Metrics at {url}/metrics (health {url}/healthz, readiness "
                       f"{url}/readyz)", err=True)
        subscriptions = []
        if with_alerts:
            from alerts.duration import parse_duration
            from backlight.consumer_alerts import ConsumerAlerts

            every = parse_duration(settings.alerts.every).wall_seconds
            rounds = ConsumerAlerts(settings, every).start()
            running.callback(rounds.stop)
            subscriptions.append(rounds.subscription())
        if with_read_models:
            from backlight.read_models import subscription

            subscriptions.append(subscription(settings, running))
        stats = jobs.consume(settings, exit_when_idle, stop=stop, subscriptions=subscriptions,
                             metrics=metrics)
    click.echo(f"consumed {stats.messages} messages: {stats.stored} stored, "
               f"{stats.duplicates} already stored, {stats.dead_letters} dead-lettered")


@main.command()
@_config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--process", required=True, help="Process name the events belong to.")
@click.option("--topic", default=None, help="Topic (default: the process's configured source).")
@click.option("--speed", type=float, default=None,
              help="Pace by the log's own timestamps, this many times faster (e.g. 3600).")
@_errors_exit
def replay(config_path: str | None, file: Path, process: str, topic: str | None,
           speed: float | None) -> None:
    """Publish an existing log (XES, XES.gz, CSV, Parquet) as case events."""
    from backlight import jobs

    settings = _settings(config_path)
    sent, topic = jobs.replay(settings, file, process, topic, speed)
    click.echo(f"published {sent} events of {file.name} to {topic}")


@main.command()
@_config_option
@click.option("--process", "processes", multiple=True, required=True,
              type=click.Choice(["onboarding", "payments", "claims"]),
              help="Process to simulate (repeatable).")
@click.option("--cases", type=click.IntRange(1, 10_000_000), default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--start", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]), default=None,
              help="First case arrives then (Europe/Amsterdam working hours).")
@click.option("--bottleneck", default=None, metavar="ACTIVITY",
              help="Inject a bottleneck: waits before ACTIVITY grow --bottleneck-factor times.")
@click.option("--bottleneck-since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
              default=None, help="...from this time on (default: from the first case).")
@click.option("--bottleneck-factor", type=float, default=5.0, show_default=True)
@click.option("--bottleneck-segment", default=None, metavar="ATTRIBUTE=VALUE",
              help="...only for cases with this attribute value (e.g. region=east).")
@click.option("--rework", default=None, metavar="A,B",
              help="Inject a rework loop over these activities (comma-separated).")
@click.option("--rework-since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
              default=None, help="...only in cases arriving from this time on.")
@click.option("--stuck-after", default=None, metavar="ACTIVITY",
              help="Inject stuck cases that stop after ACTIVITY.")
@click.option("--ground-truth", type=click.Path(dir_okay=False), default=None,
              help="Write the injected anomalies' ground truth to this JSON file.")
@_errors_exit
def simulate(config_path: str | None, processes: tuple[str, ...], cases: int, seed: int,
             start: datetime | None, bottleneck: str | None, bottleneck_since: datetime | None,
             bottleneck_factor: float, bottleneck_segment: str | None, rework: str | None,
             rework_since: datetime | None, stuck_after: str | None,
             ground_truth: str | None) -> None:
    """Publish realistic synthetic cases, with known injected anomalies on request."""
    from backlight import jobs
    from ingest.errors import SimulationError

    settings = _settings(config_path)
    segment = None
    if bottleneck_segment is not None:
        key, sep, value = bottleneck_segment.partition("=")
        if not (sep and key and value):
            raise click.BadParameter("write ATTRIBUTE=VALUE, e.g. region=east",
                                     param_hint="--bottleneck-segment")
        segment = (key, value)
    try:
        done = jobs.simulate(settings, processes, cases, seed=seed, start=start,
                             bottleneck=bottleneck, bottleneck_since=bottleneck_since,
                             bottleneck_factor=bottleneck_factor, bottleneck_segment=segment,
                             rework=rework, rework_since=rework_since,
                             stuck_after=stuck_after, ground_truth=ground_truth)
    except SimulationError as exc:
        raise click.BadParameter(str(exc)) from None
    for process, (events, topic) in done.items():
        click.echo(f"{process}: published {events} events of {cases} cases to {topic}")


@main.command()
@_config_option
@click.option("--process", required=True, help="The process to discover.")
@click.option("--format", "fmt", type=click.Choice(["json", "svg", "bpmn", "xes"]),
              default="json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of to standard output.")
@click.option("--lifecycle", type=click.Choice(["start", "complete", "schedule"]), default=None,
              help="Only events of this lifecycle transition (default: all).")
@click.option("--view", type=click.Choice(["frequency", "performance"]), default="frequency",
              show_default=True, help="For --format svg: counts, or waiting times.")
@click.option("--activities", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True, help="For --format svg: share of activities shown.")
@click.option("--paths", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="For --format svg: share of paths shown (plus what keeps the map connected).")
@_errors_exit
def mine(config_path: str | None, process: str, fmt: str, out: Path | None,
         lifecycle: str | None, view: str, activities: float, paths: float) -> None:
    """Discover a process from the store: JSON figures, an SVG map, BPMN, or XES."""
    from backlight.mine import mine as run_mine

    mined = run_mine(_settings(config_path), process, fmt,  # type: ignore[arg-type]
                     lifecycle=lifecycle, view=view, activities=activities,  # type: ignore[arg-type]
                     paths=paths)
    for note in mined.notes:
        click.echo(f"# {printable(note)}", err=True)
    if out is None:
        click.echo(mined.text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(mined.text)
        click.echo(f"wrote {out}", err=True)


@main.command()
@_config_option
@click.option("--cases", type=click.IntRange(1, 100_000), default=2000, show_default=True,
              help="Cases to simulate per process (the alert rules need some weeks of them).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("backlight-demo"), show_default=True,
              help="Where the demo keeps its broker, store and outputs.")
@click.option("--no-serve", is_flag=True,
              help="End after the results instead of serving the web app (scripts, tests).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="The web app's port (default: [web] port, 8080; 0 picks a free one).")
@_errors_exit
def demo(config_path: str | None, cases: int, workdir: Path, no_serve: bool,
         port: int | None) -> None:
    """Everything on one machine in one command: broker, simulated events, consume, results,
    then the web app over them."""
    from backlight.demo import run_demo

    loaded = _settings(config_path)
    run_demo(loaded, workdir, cases, echo=click.echo,
             serve_port=None if no_serve else (loaded.web.port if port is None else port))


if __name__ == "__main__":
    main()
