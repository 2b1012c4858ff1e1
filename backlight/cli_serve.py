"""``backlight serve``: the web app, the JSON API, /metrics and health on one port."""

from __future__ import annotations

import threading

import click

from backlight.cli_options import config_option, errors_exit, settings


@click.command()
@config_option
@click.option("--host", default=None, help="Address to listen on (default: [web] host, "
              "127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default: [web] port, 8080; 0 picks a free one).")
@click.option("--consume", "with_consumer", is_flag=True,
              help="Also run the consumers in this process (one process for a small "
              "deployment): /metrics then counts what they ingest, /readyz waits for their lag.")
@errors_exit
def serve(config_path: str | None, host: str | None, port: int | None,
          with_consumer: bool) -> None:
    """Serve the process owners' web app and the API until Ctrl-C or SIGTERM."""
    from backlight import jobs
    from backlight.metrics import Metrics
    from backlight.web.server import serve as run

    loaded = settings(config_path)
    metrics = Metrics()
    stop = threading.Event()
    consumer = jobs.consume_in_background(loaded, metrics, stop) if with_consumer else None
    try:
        run(loaded, host or loaded.web.host, loaded.web.port if port is None else port,
            on_ready=lambda url: click.echo(f"Backlight at {url}/ (API {url}/openapi.json, "
                                            f"metrics {url}/metrics); Ctrl-C stops it", err=True),
            metrics=metrics)
    finally:
        stop.set()
        if consumer is not None:
            consumer.join(loaded.kafka.session_timeout_ms / 1000)
