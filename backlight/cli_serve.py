"""``backlight serve``: the web app, the JSON API, /metrics and health on one port."""

from __future__ import annotations

import click

from backlight.cli_options import config_option, errors_exit, settings


@click.command()
@config_option
@click.option("--host", default=None, help="Address to listen on (default: [web] host, "
              "127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port (default: [web] port, 8080; 0 picks a free one).")
@errors_exit
def serve(config_path: str | None, host: str | None, port: int | None) -> None:
    """Serve the process owners' web app and the API until Ctrl-C or SIGTERM."""
    from backlight.web.server import serve as run

    loaded = settings(config_path)
    run(loaded, host or loaded.web.host, loaded.web.port if port is None else port,
        on_ready=lambda url: click.echo(f"Backlight at {url}/ (API {url}/openapi.json, metrics "
                                        f"{url}/metrics); Ctrl-C stops it", err=True))
