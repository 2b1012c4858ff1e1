"""`backlight consume --read-models` keeps the read models as events arrive through the real
broker; `backlight rebuild` folds them again to the same figures."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import backlight, write_config

from backlight.config import load
from backlight.jobs import simulate
from backlight.read_models import NAME, figures, working_time
from mining.read_model import ReadModel
from storage import ReadModelTables, open_store


def test_consume_folds_what_it_stores_and_rebuild_gives_it_back(tmp_path: Path, kafka_bootstrap: str,
                                                                unique: str) -> None:
    """After `consume --read-models`, the stored figures are the fold of every stored event (mark
    at the last one, durations in working time too); `rebuild --process claims` and `rebuild`
    leave them equal; `figures`
    prints them, and names an unknown process with exit 2."""
    db = tmp_path / "s.db"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, db, [(f"claims.{unique}", "claims")],
                       f"g-{unique}")
    settings = load(cfg)
    published = simulate(settings, ["claims"], 150, seed=4)["claims"][0]
    out = backlight("consume", "--read-models", "--config", str(cfg), "--exit-when-idle", "3")
    assert f"{published} stored" in out.stdout

    store, tables = open_store(settings.store.url), ReadModelTables(settings.store.url)
    try:
        ends = next((p.end_activities for p in settings.processes if p.name == "claims"), ())
        stored = [event for _, event, _ in store.since(0, 10**7)]
        calendar = working_time(settings.alerts.calendar.calendar())
        built = ReadModel("claims", end_activities=ends, business=calendar).update(stored).figures()
        assert tables.mark(NAME) == store.last_seq()
        assert figures(tables, "claims") == built
        assert built.events == published

        rebuilt = backlight("rebuild", "--process", "claims", "--config", str(cfg))
        assert f"{published} events folded" in rebuilt.stdout
        assert figures(tables, "claims") == built
        backlight("rebuild", "--config", str(cfg))
        assert figures(tables, "claims") == built

        shown = json.loads(backlight("figures", "--process", "claims", "--config", str(cfg)).stdout)
        assert (shown["events"], shown["cases"], shown["unfolded_events"]) == (built.events, built.cases, 0)
        unknown = backlight("figures", "--process", "nope", "--config", str(cfg), check=False)
        assert unknown.returncode == 2 and "'nope'" in unknown.stderr
    finally:
        tables.close()
        store.close()
