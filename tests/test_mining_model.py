"""Model discovery (inductive miner on the top variants) and conformance to a reference model."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pm4py
import polars as pl
import pytest
from conftest import shared_file
from lxml import etree  # type: ignore[import-untyped]

from ingest.logfiles import read_log
from mining.errors import MiningError
from mining.frame import SCHEMA, check_frame, frame_from_rows
from mining.model import (
    ActivityCases,
    ModelFileError,
    check_conformance,
    discover_model,
    load_reference_model,
)
from mining.variants import discover_variants

KEYS = {"activity_key": "activity", "case_id_key": "case_id", "timestamp_key": "timestamp"}
PM4PY_KEYS = {"activity_key": "concept:name", "case_id_key": "case:concept:name",
              "timestamp_key": "time:timestamp"}
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def our_frame(path: Path) -> pl.DataFrame:
    """A shared log read by ingest.logfiles.read_log as an event frame; seq is file order."""
    rows = [(e.event_id, e.case_id, e.activity, e.time_us, e.lifecycle, e.resource, e.team,
             e.attributes, seq) for seq, e in enumerate(read_log(path, "p"))]
    frame = pl.DataFrame(rows, schema={**SCHEMA, "timestamp": pl.Int64()}, orient="row")
    return check_frame(frame.with_columns(pl.col("timestamp").cast(SCHEMA["timestamp"])))


def pm4py_log(path: Path) -> pd.DataFrame:
    """The same log read by pm4py itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.suffix == ".csv":
            return pm4py.format_dataframe(pd.read_csv(path))
        return pm4py.read_xes(str(path), return_legacy_log_object=False)


def hand_log(traces: Sequence[str | Sequence[str]]) -> pl.DataFrame:
    """One case per trace (a string is one letter per activity), a minute between events."""
    return frame_from_rows(
        {"case_id": f"c{i:02d}", "activity": activity, "timestamp": T0 + timedelta(hours=i, minutes=j)}
        for i, trace in enumerate(traces) for j, activity in enumerate(trace)
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bpic2012() -> pl.DataFrame:
    """BPI Challenge 2012 as our event frame (262,200 events)."""
    return our_frame(shared_file("logs/bpic2012.xes.gz"))


@pytest.mark.shared_data
def test_roadtraffic_pnml_fitness_equals_pm4py() -> None:
    """Road-traffic fines against roadtraffic.pnml: exactly pm4py's token-based replay fitness."""
    log, model = shared_file("logs/roadtraffic100traces.xes"), shared_file("models/roadtraffic.pnml")
    ours = check_conformance(our_frame(log), model)
    theirs = pm4py.fitness_token_based_replay(pm4py_log(log), *pm4py.read_pnml(str(model)), **PM4PY_KEYS)
    assert ours.fitness == theirs
    assert ours.cases == 100
    assert ours.fitting_share == pytest.approx(theirs["perc_fit_traces"] / 100)
    assert ours.not_in_log == ("Appeal to Judge",)  # in the documented model, not in these 100 cases


@pytest.mark.shared_data
def test_receipt_bpmn_fitness_equals_pm4py() -> None:
    """receipt.csv against receipt.bpmn (converted to a Petri net): exactly pm4py's fitness."""
    log, model = shared_file("logs/receipt.csv"), shared_file("models/receipt.bpmn")
    ours = check_conformance(our_frame(log), model)
    net = pm4py.convert_to_petri_net(pm4py.read_bpmn(str(model)))
    assert ours.fitness == pm4py.fitness_token_based_replay(pm4py_log(log), *net, **PM4PY_KEYS)
    assert (ours.cases, ours.not_in_model, ours.not_in_log) == (1434, (), ())


@pytest.mark.shared_data
def test_receipt_against_partial_model_equals_pm4py_and_names_deviations(tmp_path: Path) -> None:
    """A model of half of receipt's cases: pm4py's fitness (< 1) and deviations named per activity."""
    log = shared_file("logs/receipt.csv")
    frame = our_frame(log)
    model = write(tmp_path / "half.pnml", discover_model(frame, coverage=0.5).pnml)
    ours = check_conformance(frame, model)
    theirs = pm4py.fitness_token_based_replay(pm4py_log(log), *pm4py.read_pnml(str(model)), **PM4PY_KEYS)
    assert ours.fitness == theirs
    assert ours.fitness["log_fitness"] < 1
    assert ours.fitting_cases == round(theirs["perc_fit_traces"] * ours.cases / 100)
    labels = {t.label for t in pm4py.read_pnml(str(model))[0].transitions if t.label}
    unknown = frame.filter(~pl.col("activity").is_in(list(labels)))
    assert {a.activity for a in ours.not_in_model} == set(unknown["activity"])
    top = ours.not_in_model[0]
    assert top.cases == unknown.filter(pl.col("activity") == top.activity)["case_id"].n_unique()
    assert f"Activity {top.activity!r} happens in {top.cases} cases but is not in the documented model." \
        in ours.findings()
    assert ours.out_of_order and ours.unfinished_cases > 0


@pytest.mark.shared_data
def test_bpic2012_bpmn_parses_covers_share_and_says_what_was_left_out(bpic2012: pl.DataFrame) -> None:
    """BPIC 2012: the BPMN is XML, the top variants cover >= 80 % of cases, the rest is reported."""
    model = discover_model(bpic2012)
    root = etree.fromstring(model.bpmn_xml.encode())
    assert etree.QName(root).localname == "definitions"
    tasks = {t.get("name") for t in root.iter("{*}task")}
    labels = {t.label for t in model.net.transitions if t.label}
    assert tasks == labels
    assert etree.QName(etree.fromstring(model.pnml.encode())).localname == "pnml"
    variants = discover_variants(bpic2012, "complete")
    assert (model.variants_total, model.cases_total) == (len(variants), 13087)
    # the fewest most-frequent variants reaching the share
    kept = variants[: model.variants_kept]
    assert model.cases_covered == sum(v.count for v in kept)
    assert model.case_share >= 0.8 > (model.cases_covered - kept[-1].count) / model.cases_total
    complete = bpic2012.filter(pl.col("lifecycle") == "complete")
    assert {a.activity for a in model.activities_not_in_model} == set(complete["activity"]) - labels
    assert model.lifecycle == "complete"
    said = model.left_out()[0]
    assert f"{model.cases_covered} of 13087 cases" in said
    assert f"{model.variants_kept} most frequent of {len(variants)} variants" in said


def test_hand_built_log_model_replays_its_own_traces(tmp_path: Path) -> None:
    """A model of every variant of a hand-built log replays all of its traces: fitness 1.0."""
    frame = hand_log(["abcd"] * 5 + ["acbd"] * 3 + ["abd", "abcbcd"])
    model = discover_model(frame, coverage=1.0)
    assert (model.variants_kept, model.cases_covered, model.activities_not_in_model) == (4, 10, ())
    result = check_conformance(frame, write(tmp_path / "own.pnml", model.pnml))
    assert result.fitness["log_fitness"] == 1.0
    assert (result.fitting_cases, result.fitness["perc_fit_traces"]) == (10, 100.0)
    assert (result.out_of_order, result.unfinished_cases) == ((), 0)


def test_default_coverage_leaves_out_rare_variant_and_says_so() -> None:
    """At the default coverage a rare variant is left out and its own activity is reported."""
    frame = hand_log(["abc"] * 8 + ["axc"] * 2)
    model = discover_model(frame)
    assert (model.variants_kept, model.variants_total, model.cases_covered) == (1, 2, 8)
    assert model.case_share == 0.8
    assert model.activities_not_in_model == (ActivityCases("x", 2),)
    assert "Activity 'x' (2 cases) is not in the model: it occurs only in left-out cases." \
        in model.left_out()


def test_deviations_are_named_per_activity(tmp_path: Path) -> None:
    """Unknown activities, steps the model does not allow and unfinished cases, by activity."""
    reference = write(tmp_path / "seq.pnml", discover_model(hand_log(["abcd"]), coverage=1.0).pnml)
    frame = hand_log(["abcd", "abcd", "abxcd", "acd", "abc"])
    result = check_conformance(frame, reference)
    assert result.not_in_model == (ActivityCases("x", 1),)
    # pm4py skips activities the model lacks: abxcd still fits
    assert (result.cases, result.fitting_cases) == (5, 3)
    assert result.out_of_order == (ActivityCases("c", 1),)  # acd: c without b
    assert result.unfinished_cases == 2  # acd leaves b's input token, abc never does d
    assert result.expected_next == (ActivityCases("b", 1), ActivityCases("d", 1))
    findings = result.findings()
    assert findings[0] == "3 of 5 cases (60.0%) follow the documented model seq.pnml; replay fitness " \
        f"{result.fitness['log_fitness']:.3f}."
    assert "Activity 'x' happens in 1 case but is not in the documented model." in findings
    theirs = pm4py.fitness_token_based_replay(
        frame.to_pandas(), *pm4py.read_pnml(str(reference)), **KEYS)
    assert result.fitness == theirs


def test_model_labels_are_matched_to_log_names(tmp_path: Path) -> None:
    """Model labels spelt differently from the log's names are matched; unmatched ones reported."""
    model = discover_model(hand_log([["Check Claim", "Pay  claim+complete"], ["Check Claim", "Z"]]),
                           coverage=1.0)
    reference = write(tmp_path / "claims.pnml", model.pnml)
    result = check_conformance(hand_log([["check claim", "Pay claim"]] * 3), reference)
    assert result.matched == {"Check Claim": "check claim", "Pay  claim+complete": "Pay claim"}
    assert result.not_in_log == ("Z",)
    assert result.not_in_model == ()
    assert result.fitting_cases == 3
    assert "Model activity 'Z' never happens in the log (no activity of that name)." in result.findings()


def test_only_complete_events_by_default() -> None:
    """start/complete pairs of one activity do not become loops: only complete events are mined."""
    rows = [{"case_id": f"c{i}", "activity": a, "lifecycle": lc, "seq": 4 * i + 2 * j + k,
             "timestamp": T0 + timedelta(hours=i, minutes=2 * j + k)}
            for i in range(4) for j, a in enumerate("ab") for k, lc in enumerate(("start", "complete"))]
    frame = frame_from_rows(rows)
    model = discover_model(frame)
    assert model.lifecycle == "complete"
    assert sorted(t.label for t in model.net.transitions if t.label) == ["a", "b"]
    assert len(model.net.transitions) == 2  # a strict sequence, no hidden loop transitions
    everything = discover_model(frame, lifecycle=None)
    assert everything.lifecycle is None
    assert len(everything.net.transitions) > 2


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("absent.bpmn", None, "no such model file"),
        ("garbage.bpmn", "this is not XML", "cannot read the BPMN model"),
        ("empty.pnml", "", "cannot read the PNML model"),
        ("other.pnml", "<?xml version='1.0'?><foo/>", "the PNML model has no activities"),
        ("model.txt", "<definitions/>", "unknown model format '.txt'"),
    ],
)
def test_bad_model_file_gives_clear_error(tmp_path: Path, name: str, content: str | None,
                                          says: str) -> None:
    """A missing, garbage or wrong-format model file raises ModelFileError naming the file."""
    path = tmp_path / name
    if content is not None:
        write(path, content)
    with pytest.raises(ModelFileError, match=says) as caught:
        check_conformance(hand_log(["ab"]), path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, MiningError)


@pytest.mark.shared_data
def test_pnml_read_as_bpmn_is_rejected(tmp_path: Path) -> None:
    """A Petri net saved as .bpmn (pm4py reads it as an empty BPMN) is an error, not fitness 0."""
    path = write(tmp_path / "fines.bpmn", shared_file("models/roadtraffic.pnml").read_text())
    with pytest.raises(ModelFileError, match="the BPMN model has no activities"):
        load_reference_model(path)


@pytest.mark.shared_data
def test_bpmn_pm4py_cannot_read_gives_model_file_error() -> None:
    """pm4py's bare AttributeError on a BPMN with text-annotation links becomes ModelFileError."""
    path = shared_file("models/ch7_CreditAppSimulation.bpmn")
    with pytest.raises(ModelFileError, match=r"cannot read the BPMN model: pm4py.read_bpmn failed") as caught:
        load_reference_model(path)
    assert str(path) in str(caught.value)


def test_bad_parameters_are_rejected() -> None:
    """Coverage outside (0, 1] and an unknown lifecycle are refused with a MiningError."""
    for coverage in (0.0, 1.5):
        with pytest.raises(MiningError, match="coverage"):
            discover_model(hand_log(["ab"]), coverage=coverage)
    with pytest.raises(MiningError, match="lifecycle"):
        discover_model(hand_log(["ab"]), lifecycle="done")


@pytest.mark.bench
@pytest.mark.shared_data
def test_bench_bpic2012_discovery(bpic2012: pl.DataFrame) -> None:
    """BPIC 2012: our discovery on the top variants vs pm4py's inductive miner on the raw log."""
    started = time.perf_counter()
    model = discover_model(bpic2012)
    ours = time.perf_counter() - started
    raw: Any = pm4py_log(shared_file("logs/bpic2012.xes.gz"))
    started = time.perf_counter()
    pm4py.discover_petri_net_inductive(raw, **PM4PY_KEYS)
    theirs = time.perf_counter() - started
    complete = raw[raw["lifecycle:transition"].str.lower() == "complete"]
    started = time.perf_counter()
    pm4py.discover_petri_net_inductive(complete, **PM4PY_KEYS)
    theirs_complete = time.perf_counter() - started
    print(f"\nBPIC 2012 discovery: ours {ours:.2f} s (top {model.variants_kept} of "
          f"{model.variants_total} variants, {model.cases_covered}/{model.cases_total} cases = "
          f"{model.case_share:.1%}, BPMN + PNML included) | pm4py IM raw log {theirs:.2f} s | "
          f"pm4py IM complete events {theirs_complete:.2f} s | target <= 5 s "
          f"{'met' if ours <= 5.0 else 'MISSED (is the machine busy?)'}")
    assert ours < theirs_complete < theirs
