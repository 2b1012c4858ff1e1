"""The one place the mining core imports pm4py: explicit keys, pandas frames, MiningError."""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from mining.errors import MiningError, Pm4pyError
from mining.frame import check_frame, ordered

KEYS = {"activity_key": "activity", "case_id_key": "case_id", "timestamp_key": "timestamp"}


def to_pandas(df: pl.DataFrame) -> Any:
    """A checked event frame as a pandas DataFrame ordered by (case_id, timestamp, seq)."""
    # Not arrival order: pm4py's start/end activities, variants and case durations read each
    # case's rows in frame order and get_variants assumes a case's rows are contiguous; on
    # interleaved cases (live arrival order) it mixes them. Its DFG re-sorts stably: no change.
    return ordered(check_frame(df)).to_pandas()


def _module(name: str = "pm4py") -> Any:
    """pm4py (or one of its modules), imported lazily: slow, and prints a banner."""
    return importlib.import_module(name)


@contextmanager
def _wrapped(what: str) -> Iterator[None]:
    """Turn pm4py's bare exceptions (AttributeError, KeyError, lxml errors...) into Pm4pyError."""
    try:
        yield
    except MiningError:
        raise
    except Exception as exc:
        raise Pm4pyError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def _call(name: str, df: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
    """Call pm4py.`name` on the frame with our column keys; pm4py failures become MiningError."""
    frame = to_pandas(df)  # a fresh copy: pm4py adds columns to the frames it is given
    with _wrapped(f"pm4py.{name}"):
        function: Callable[..., Any] = getattr(_module(), name)
        return function(frame, *args, **KEYS, **kwargs)


def discover_dfg(
    df: pl.DataFrame,
) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
    """pm4py.discover_dfg: (edge counts, start activities, end activities)."""
    result: tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]] = _call("discover_dfg", df)
    return result


def discover_performance_dfg(df: pl.DataFrame) -> dict[tuple[str, str], dict[str, float]]:
    """pm4py.discover_performance_dfg: per edge {mean, median, max, min, sum, stdev} seconds."""
    perf: dict[tuple[str, str], dict[str, float]] = _call("discover_performance_dfg", df)[0]
    return perf


def get_variants(df: pl.DataFrame) -> dict[tuple[str, ...], int]:
    """pm4py.get_variants: activity tuple -> number of cases."""
    variants: dict[tuple[str, ...], int] = _call("get_variants", df)
    return variants


def get_all_case_durations(df: pl.DataFrame) -> list[float]:
    """pm4py.get_all_case_durations: sorted case durations in seconds."""
    durations: list[float] = _call("get_all_case_durations", df)
    return durations


def discover_process_tree(df: pl.DataFrame, noise_threshold: float = 0.0) -> Any:
    """pm4py.discover_process_tree_inductive (IMf when noise_threshold > 0)."""
    return _call("discover_process_tree_inductive", df, noise_threshold=noise_threshold)


def convert_to_petri_net(model: Any) -> tuple[Any, Any, Any]:
    """pm4py.convert_to_petri_net of a process tree or BPMN: (net, initial, final marking)."""
    with _wrapped("pm4py.convert_to_petri_net"):
        net, initial, final = _module().convert_to_petri_net(model)
        return net, initial, final


def convert_to_bpmn(tree: Any) -> Any:
    """pm4py.convert_to_bpmn of a process tree."""
    with _wrapped("pm4py.convert_to_bpmn"):
        return _module().convert_to_bpmn(tree)


def bpmn_xml(bpmn: Any) -> str:
    """BPMN 2.0 XML with diagram layout (pm4py.write_bpmn only writes files: via a temp file)."""
    # The layout runs Graphviz on the activity names: one like "<b>x</b>" would be read as an
    # HTML label and break it. nohtml keeps them plain text (still str, as written to the XML).
    nohtml = _module("graphviz").nohtml
    for node in bpmn.get_nodes():
        node.set_name(nohtml(node.get_name()))
    with tempfile.TemporaryDirectory(prefix="backlight-") as tmp, _wrapped("pm4py.write_bpmn"):
        path = Path(tmp) / "model.bpmn"
        _module().write_bpmn(bpmn, str(path))
        return path.read_text(encoding="utf-8")


def pnml_text(net: Any, initial: Any, final: Any) -> str:
    """PNML of a Petri net with its markings (pm4py.write_pnml, via a temp file)."""
    with tempfile.TemporaryDirectory(prefix="backlight-") as tmp, _wrapped("pm4py.write_pnml"):
        path = Path(tmp) / "model.pnml"
        _module().write_pnml(net, initial, final, str(path))
        return path.read_text(encoding="utf-8")


def read_bpmn(path: Path) -> Any:
    """pm4py.read_bpmn."""
    with _wrapped("pm4py.read_bpmn"):
        return _module().read_bpmn(str(path))


def read_pnml(path: Path) -> tuple[Any, Any, Any]:
    """pm4py.read_pnml; a missing final marking is guessed (the net's sink places)."""
    with _wrapped("pm4py.read_pnml"):
        net, initial, final = _module().read_pnml(str(path), auto_guess_final_marking=True)
        return net, initial, final


def token_based_replay(df: pl.DataFrame, net: Any, initial: Any, final: Any) -> list[dict[str, Any]]:
    """pm4py.conformance_diagnostics_token_based_replay: one result per case, by sorted case id."""
    # Same replay parameters as pm4py.fitness_token_based_replay (remaining tokens count), so
    # `replay_fitness` of these results is that function's answer, from one replay instead of two.
    results: list[dict[str, Any]] = _call(
        "conformance_diagnostics_token_based_replay", df, net, initial, final,
        opt_parameters={"show_progress_bar": False},
    )
    return results


def replay_fitness(results: list[dict[str, Any]]) -> dict[str, float]:
    """pm4py's token-based fitness dict (log_fitness, perc_fit_traces, ...) from replay results."""
    with _wrapped("pm4py token-based replay fitness"):
        evaluate = _module("pm4py.algo.evaluation.replay_fitness.variants.token_replay").evaluate
        fitness: dict[str, float] = evaluate(results)
        return fitness
