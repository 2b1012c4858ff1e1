"""The overview line of a process from its read model (backlight/overview.py) against the same
figures computed exactly from the stored events: counts equal, working-time medians within the
sketch's 1%, SLA met exact but for cases within 1% of the SLA, on SQLite with the simulator."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest

from alerts.duration import parse_duration
from alerts.registry import ProcessDefinition
from backlight.config import Settings, load
from backlight.figures_view import UnknownWindow
from backlight.overview import ProcessFigures, process_figures
from backlight.read_models import ReadModels
from backlight.web.server import running
from backlight.web.service import FOLD_PER_REQUEST
from ingest.simulate import Anomalies, ReworkLoop, simulate
from storage import ReadModelTables, open_store

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def onboarding(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Half a year of onboarding (SLA 5 business days) with a rework loop, folded."""
    folder = tmp_path_factory.mktemp("overview")
    url = f"sqlite:///{folder / 'store.db'}"
    config = folder / "backlight.toml"
    config.write_text(f'[store]\nurl = "{url}"\n')
    data = load(environ={}).model_dump(mode="python")
    data["store"]["url"] = url
    settings = Settings.model_validate(data)
    loop = ReworkLoop(("Request missing documents", "Documents received"), share=0.2)
    sim = simulate("onboarding", 3_000, seed=11, anomalies=Anomalies(rework=loop))
    store, tables = open_store(url), ReadModelTables(url)
    try:
        store.write(sim.events)
        ReadModels.for_settings(store, tables, settings).catch_up()
    finally:
        tables.close()
        store.close()
    return settings


def definition(settings: Settings) -> ProcessDefinition:
    """Onboarding as configured by the embedded defaults: its SLA in its calendar."""
    proc = next(p for p in settings.processes if p.name == "onboarding")
    assert proc.sla is not None
    return ProcessDefinition(name="onboarding", sla=parse_duration(proc.sla),
                             calendar=settings.alerts.calendar.calendar())


def exact(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every case with its end, completion day and working-time duration; and the events."""
    store = open_store(settings.store.url)
    try:
        events = store.events("onboarding")
    finally:
        store.close()
    cases = (events.group_by("case_id").agg(
        pl.col("timestamp").first().alias("first"), pl.col("timestamp").last().alias("last"),
        pl.col("activity").last().alias("end"), pl.len().alias("events"),
        (pl.col("activity").filter(pl.col("lifecycle") == "complete").len()
         > pl.col("activity").filter(pl.col("lifecycle") == "complete").n_unique()).alias("rework")))
    first = cases["first"].dt.epoch("us").to_numpy()
    last = cases["last"].dt.epoch("us").to_numpy()
    working = definition(settings).calendar.business_seconds(first, last)
    ends = set(settings.end_activities["onboarding"])
    cases = cases.with_columns(pl.Series("working_s", np.asarray(working)),
                               pl.col("end").is_in(list(ends)).alias("completed"),
                               pl.col("last").dt.truncate("1d").alias("day"))
    return cases, events


def line(settings: Settings, window: str) -> ProcessFigures:
    """The overview line from the store and its read models."""
    store, tables = open_store(settings.store.url), ReadModelTables(settings.store.url)
    try:
        return process_figures(definition(settings), window, tables, store, NOW)
    finally:
        tables.close()
        store.close()


def test_all_time_counts_equal_the_events_and_durations_are_within_one_percent(
        onboarding: Settings) -> None:
    """All time: events, cases, open cases and rework share exact; the median working-time
    duration of the completed cases within 1%; SLA met within the cases near the SLA."""
    cases, events = exact(onboarding)
    got = line(onboarding, "all")
    done = cases.filter(pl.col("completed"))
    assert (got.events, got.cases, got.open_cases) == (events.height, cases.height,
                                                       cases.height - done.height)
    assert got.rework_share == pytest.approx(cases["rework"].mean(), abs=1e-12)
    assert 0.1 < got.rework_share < 0.5
    median = float(np.median(done["working_s"].to_numpy()))
    assert got.median_case_s == pytest.approx(median, rel=0.0101)
    limit = definition(onboarding).calendar.seconds(parse_duration("5 business days"))
    near = ((done["working_s"] - limit).abs() <= 0.0101 * limit).sum()
    met = (done["working_s"] <= limit).sum()
    assert got.sla_met is not None
    assert abs(got.sla_met * done.height - met) <= near
    assert got.as_of == events["timestamp"].max() and got.out_of_range == 0


def test_a_window_counts_the_cases_completed_in_its_days_and_weeks(onboarding: Settings) -> None:
    """The last 4 weeks: the cases completed in the 28 UTC days up to the last completion,
    counted exactly; each ISO week's case count exact and median within 1%."""
    cases, _ = exact(onboarding)
    got = line(onboarding, "4w")
    done = cases.filter(pl.col("completed"))
    last = done["day"].max()
    window = done.filter(pl.col("day") > last - pl.duration(days=28))
    assert (got.cases, got.events) == (window.height, window["events"].sum())
    assert got.median_case_s == pytest.approx(float(np.median(window["working_s"].to_numpy())),
                                              rel=0.0101)
    weeks = (window.with_columns(pl.col("day").dt.strftime("%G-W%V").alias("week"))
             .group_by("week").agg(pl.len().alias("n"), pl.col("working_s").median().alias("m"))
             .sort("week"))
    assert [w.week for w in got.weekly] == weeks["week"].to_list()
    for week, n, median in zip(got.weekly, weeks["n"], weeks["m"], strict=True):
        assert week.cases == n
        assert math.isclose(week.median_seconds, median, rel_tol=0.0101)


def test_a_store_never_folded_says_it_is_catching_up(tmp_path: Path) -> None:
    """Over HTTP, the first overview of a store of 60k never-folded events folds 50,000 and says
    how many are left; the next view folds the rest and the notice is gone."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sim = simulate("onboarding", 8_000, seed=3)
    store = open_store(url)
    try:
        store.write(sim.events)
    finally:
        store.close()
    data = load(environ={}).model_dump(mode="python")
    data["store"]["url"] = url
    with running(Settings.model_validate(data)) as base:
        first = httpx.get(base + "/", timeout=120).text
        second = httpx.get(base + "/", timeout=120).text
    left = len(sim.events) - FOLD_PER_REQUEST
    assert left > 0
    assert "catching up" in first and f"{left} stored events not in these figures yet" in first
    assert "catching up" not in second


def test_an_unknown_window_is_an_error_that_names_the_windows(onboarding: Settings) -> None:
    """A line asked for a window that does not exist is refused with the allowed windows."""
    with pytest.raises(UnknownWindow, match="unknown window 'year'; allowed: 4w, quarter, all"):
        line(onboarding, "year")
