"""The conformance rule: recent cases replayed on the documented reference model."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import shared_file

from alerts.context import RuleContext
from alerts.registry import ProcessDefinition
from alerts.rules.conformance import conformance
from alerts.thresholds import RuleSettings
from ingest.logfiles import read_log
from mining.frame import SCHEMA, Events, check_frame, frame_from_rows, prepare
from schemas.alerts import Finding, Severity

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def log_frame(path: Path) -> pl.DataFrame:
    """A shared log read the way ingest reads it, as an event frame (seq is file order)."""
    rows = [(e.event_id, e.case_id, e.activity, e.time_us, e.lifecycle, e.resource, e.team,
             e.attributes, seq) for seq, e in enumerate(read_log(path, "receipt"))]
    frame = pl.DataFrame(rows, schema={**SCHEMA, "timestamp": pl.Int64()}, orient="row")
    return check_frame(frame.with_columns(pl.col("timestamp").cast(SCHEMA["timestamp"])))


@pytest.fixture(scope="module")
def receipt() -> pl.DataFrame:
    """receipt.csv (1,434 cases, 2010-10 to 2012-01) as an event frame."""
    return log_frame(shared_file("logs/receipt.csv"))


def evaluate(df: pl.DataFrame | Events, model: str | None, now: datetime,
             **overrides: Any) -> list[Finding]:
    """The conformance rule's findings for a process named "receipt" with that model."""
    rules = RuleSettings().merged({"conformance": overrides})
    process = ProcessDefinition(name="receipt", reference_model=model, rules=rules)
    return conformance(RuleContext(process, prepare(df), now))


def after(df: pl.DataFrame) -> datetime:
    """A minute after the last event."""
    last: datetime = df["timestamp"].max()  # type: ignore[assignment]
    return last + timedelta(minutes=1)


@pytest.mark.shared_data
def test_receipt_fits_its_model_so_nothing_is_said(receipt: pl.DataFrame) -> None:
    """receipt.csv replays on receipt.bpmn with fitness 1.0: no finding, over the default
    window (the last 30 days) and over every case."""
    model = str(shared_file("models/receipt.bpmn"))
    assert evaluate(receipt, model, after(receipt)) == []
    assert evaluate(receipt, model, after(receipt), recent="1000 days") == []


@pytest.mark.shared_data
def test_reversed_receipt_cases_deviate_and_the_finding_names_how(receipt: pl.DataFrame) -> None:
    """Every case's steps in reverse order: few cases follow the model, the finding says so
    and names the main deviations (steps where the model does not allow them, steps undone)."""
    model = str(shared_file("models/receipt.bpmn"))
    reversed_ = receipt.with_columns(pl.col("timestamp").reverse().over("case_id"))
    [finding] = evaluate(reversed_, model, after(receipt), recent="1000 days")
    assert finding.subject == "conformance to reference model"
    assert finding.severity is Severity.WARNING
    assert finding.evidence["cases"] == 1434
    assert finding.evidence["fitting_share"] < 0.2
    assert finding.summary.startswith("8% of receipt cases started since ")
    assert "follow the documented model receipt.bpmn" in finding.summary
    deviations = " ".join(finding.evidence["deviations"])
    assert "where the model does not allow it" in deviations
    assert "leave steps of the model undone" in deviations


@pytest.mark.shared_data
@pytest.mark.parametrize("seed", range(5))
def test_procedure_drift_is_found_and_a_clean_sample_is_not(receipt: pl.DataFrame,
                                                             seed: int) -> None:
    """Over five seeds: from a seeded onset in the last 90 days, half of the receipt cases
    started since then run their steps in another order; the rule fires over the recent
    cases and names the deviation; the same sample without the change gives no finding."""
    model = str(shared_file("models/receipt.bpmn"))
    rng = random.Random(seed)
    now = after(receipt)
    onset = now - timedelta(days=rng.randint(40, 80))
    starts = receipt.group_by("case_id").agg(pl.col("timestamp").min().alias("start"))
    recent = starts.filter(pl.col("start") >= onset)["case_id"].sort().to_list()
    changed = rng.sample(recent, len(recent) // 2)
    drifted = receipt.with_columns(
        pl.when(pl.col("case_id").is_in(changed))
        .then(pl.col("timestamp").reverse().over("case_id"))
        .otherwise(pl.col("timestamp")).alias("timestamp"))
    window = f"{(now - onset).days} days"
    [finding] = evaluate(drifted, model, now, recent=window)
    assert finding.evidence["cases"] == len(recent)
    assert finding.evidence["fitting_share"] < 0.8
    assert "where the model does not allow it" in " ".join(finding.evidence["deviations"])
    assert evaluate(receipt, model, now, recent=window) == []


def hand(traces: list[str]) -> pl.DataFrame:
    """One case per trace (one letter per activity), an hour apart, a minute between events."""
    return frame_from_rows({"case_id": f"c{i:02d}", "activity": a,
                            "timestamp": T0 + timedelta(hours=i, minutes=j)}
                           for i, trace in enumerate(traces) for j, a in enumerate(trace))


def test_unreadable_models_become_a_warning_not_a_crash(tmp_path: Path) -> None:
    """A missing file, an unknown format and a file that is not BPMN each give one warning
    finding saying the model cannot be read."""
    garbage = tmp_path / "broken.bpmn"
    garbage.write_text("<definitions>not a model", encoding="utf-8")
    (tmp_path / "model.txt").write_text("a -> b", encoding="utf-8")
    df = hand(["abc"] * 30)
    for model in (tmp_path / "absent.bpmn", tmp_path / "model.txt", garbage):
        [finding] = evaluate(df, str(model), after(df))
        assert finding.severity is Severity.WARNING
        assert finding.summary.startswith(f"the reference model {model.name} of receipt cannot "
                                          "be read: ")


@pytest.mark.shared_data
def test_no_reference_model_or_too_few_cases_say_nothing(tmp_path: Path) -> None:
    """Without a reference model there is nothing to check; with fewer recent cases than
    min_cases nothing is judged."""
    df = hand(["abc"] * 5)
    assert evaluate(df, None, after(df)) == []
    assert evaluate(df, str(tmp_path / "absent.bpmn"), after(df))[0].rule == "conformance"
    model = shared_file("models/running-example.bpmn")
    assert evaluate(df, str(model), after(df)) == []  # 5 cases < min_cases 20
