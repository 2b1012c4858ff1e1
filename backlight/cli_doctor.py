"""``backlight doctor``: the command around ``backlight.doctor``."""

from __future__ import annotations

import logging
import sys

import click

from backlight.cli_options import config_option, errors_exit, settings
from backlight.doctor import Status, config_source, diagnose, failed, render_json, render_text

_COLOURS: dict[Status, str] = {"OK": "green", "WARN": "yellow", "FAIL": "red"}


@click.command()
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="text for people; json: a list of {check, status, "
              "detail, hint}.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.5, 300), default=10.0,
              show_default=True, metavar="SECONDS",
              help="How long each check may wait for the broker, the store or an endpoint.")
@errors_exit
def doctor(config_path: str | None, fmt: str, timeout_s: float) -> None:
    """Check the config, the broker (topics, dead-letter topics, partitions, the group's lag),
    the store (reachable, schema version, writable) and the chat endpoints (reachable; nothing
    is sent), and say what is wrong and what to do. Exits 1 when a check failed, 2 for a bad
    config."""
    loaded = settings(config_path)  # a bad config: ConfigError, exit 2 naming the key
    where = config_source(config_path)
    # kafka-python logs every refused connection; the findings say it once, with what to do
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    findings = diagnose(loaded, where, timeout_s)
    if fmt == "json":
        click.echo(render_json(findings))
    else:
        click.echo(render_text(findings, where, lambda text, status: click.style(
            text, fg=_COLOURS[status], bold=status != "OK")))
    sys.exit(1 if failed(findings) else 0)
