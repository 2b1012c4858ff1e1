"""What every ``backlight`` command shares: ``--config``, and exit codes for errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from backlight import config as cfg
from schemas.errors import BacklightError
from schemas.printable import printable

F = TypeVar("F", bound=Callable[..., Any])


def config_option(func: F) -> F:
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        default=None, help="Config file (default: backlight.toml, "
                        "else the embedded defaults).")(func)


def errors_exit(func: F) -> F:
    """A bad config exits 2 with its message; any other Backlight error exits 1 with its own."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except cfg.ConfigError as exc:
            click.echo(f"backlight: config error: {printable(str(exc))}", err=True)
            sys.exit(2)
        except BacklightError as exc:
            click.echo(f"backlight: {printable(str(exc))}", err=True)
            sys.exit(1)
    return wrapper  # type: ignore[return-value]


def settings(config_path: str | None) -> cfg.Settings:
    return cfg.load(config_path)
