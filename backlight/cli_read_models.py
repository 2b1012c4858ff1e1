"""``backlight rebuild``: fold the read models again from the stored events."""

from __future__ import annotations

import click

from backlight.cli_options import config_option, errors_exit, settings


@click.command()
@config_option
@click.option("--process", default=None, metavar="NAME",
              help="Rebuild only this process's read model (default: every process).")
@errors_exit
def rebuild(config_path: str | None, process: str | None) -> None:
    """Fold the read models again from the stored events (after an upgrade, or to repair).
    Pages, the API and running consumers keep working meanwhile."""
    from tqdm import tqdm

    from backlight.read_models import ReadModels
    from storage import ReadModelTables, open_store

    config = settings(config_path)
    store = open_store(config.store.url, config.store.session())
    try:
        tables = ReadModelTables(config.store.url, config.store.session())
        try:
            with tqdm(total=store.last_seq(), desc="rebuild", unit=" events", unit_scale=True,
                      disable=None) as bar:
                folded = ReadModels.for_settings(store, tables, config).rebuild(process, progress=bar.update)
        finally:
            tables.close()
    finally:
        store.close()
    what = f"the read model of {process!r}" if process else "every read model"
    click.echo(f"rebuilt {what}: {folded} events folded")


@click.command()
@config_option
@click.option("--process", required=True, metavar="NAME", help="The process.")
@click.option("--window", type=click.Choice(["4w", "quarter", "all"]), default="all",
              show_default=True, help="Cases completed in the last 4 weeks, quarter, or all cases.")
@errors_exit
def figures(config_path: str | None, process: str, window: str) -> None:
    """Print a process's figures from its read model as JSON (what GET
    /api/processes/NAME/figures answers), folding what arrived first."""
    from backlight.config import ConfigError
    from backlight.figures_view import figures_view
    from backlight.read_models import ReadModels
    from storage import ReadModelTables, open_store

    config = settings(config_path)
    store = open_store(config.store.url, config.store.session())
    try:
        known = {p.name for p in config.processes} | {c.process for c in store.counts()}
        if process not in known:
            raise ConfigError(f"--process {process!r}: not configured and no events of it")
        tables = ReadModelTables(config.store.url, config.store.session())
        try:
            view = figures_view(ReadModels.for_settings(store, tables, config), tables, process,
                                window)  # type: ignore[arg-type]  # one of the click choices
        finally:
            tables.close()
    finally:
        store.close()
    click.echo(view.model_dump_json(indent=2))
