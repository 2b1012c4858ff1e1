"""Process models: discovery (inductive miner) and conformance to a documented reference model.

Discovery keeps only the most frequent variants that together cover `coverage` of the cases
and runs pm4py's inductive miner on those cases. On BPIC 2012 (13,087 cases, 4,336 variants of
complete events) the variant curve is: 50 % of cases in 12 variants, 70 % in 510, 80 % in
1,719, 90 % in 3,028, the rest almost all one-case variants. At 0.8 the miner takes about 2 s
(5.6 s on all cases) and the model still replays 99.9 % of all cases with log fitness 1.00;
0.9 is slower (3.4 s) and no better, 0.7 fast (0.25 s) but only 95.6 % of cases fit. The
one-case variants at the tail are noise to the miner: they cost time and add no structure.
The noise threshold (IMf) stays 0 by default since the variant filter already drops rare
behaviour: IMf at 0.2 on top of it dropped 2 of 23 activities and fitted 54 % of cases.

Both sides use only `complete` events by default when the frame has any: the schedule, start
and complete events of one activity would otherwise be three occurrences of the same label and
become a self-loop (or a loop with its neighbours) in the model and in the replay.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl

from mining import _pm4py
from mining.errors import FrameError, MiningError, Pm4pyError
from mining.frame import NOT_XML, Events, EventsLike, only, prepare
from schemas.event import LIFECYCLES

DEFAULT_COVERAGE: Final = 0.8
DEFAULT_NOISE_THRESHOLD: Final = 0.0  # the variant filter already drops infrequent behaviour
DEFAULT_LIFECYCLE: Final = "complete"
MODEL_FORMATS: Final = (".bpmn", ".pnml")


class ModelFileError(MiningError):
    """A reference model file is missing, of an unknown format, unreadable or empty."""


@dataclass(frozen=True)
class ActivityCases:
    """An activity and the number of cases it concerns."""

    activity: str
    cases: int


@dataclass(frozen=True, eq=False)
class DiscoveredModel:
    """An inductive-miner model of the most frequent variants, and what was left out."""

    net: Any  # pm4py PetriNet
    initial_marking: Any
    final_marking: Any
    bpmn: Any  # pm4py BPMN
    bpmn_xml: str
    pnml: str
    coverage: float
    noise_threshold: float
    lifecycle: str | None  # the lifecycle the events were restricted to, None for all
    variants_kept: int
    variants_total: int
    cases_covered: int
    cases_total: int
    activities_not_in_model: tuple[ActivityCases, ...]  # by cases desc

    @property
    def case_share(self) -> float:
        """Share of cases whose variant was given to the miner."""
        return self.cases_covered / self.cases_total

    def left_out(self) -> list[str]:
        """What the model leaves out, in sentences a process owner reads."""
        lines = [
            f"The model is built from {self.cases_covered} of {self.cases_total} cases "
            f"({self.case_share:.1%}): the {self.variants_kept} most frequent of "
            f"{self.variants_total} variants; {self.variants_total - self.variants_kept} rarer "
            f"variants ({self.cases_total - self.cases_covered} cases) were left out."
        ]
        why = "occurs only in left-out cases" + (
            " or was filtered as noise" if self.noise_threshold > 0 else "")
        lines += [f"Activity {a.activity!r} ({_cases(a.cases)}) is not in the model: it {why}."
                  for a in self.activities_not_in_model]
        if self.lifecycle is not None:
            lines.append(f"Only {self.lifecycle!r} events were used.")
        return lines


@dataclass(frozen=True, eq=False)
class Conformance:
    """Token-based replay of the log on a reference model, with its main deviations."""

    model: str  # the model file
    fitness: dict[str, float]  # pm4py.fitness_token_based_replay's dict
    cases: int
    fitting_cases: int
    lifecycle: str | None
    not_in_model: tuple[ActivityCases, ...]  # log activities the model does not know
    not_in_log: tuple[str, ...]  # model activities matching no log activity
    matched: dict[str, str] = field(default_factory=dict)  # model label -> log name, if spelt apart
    out_of_order: tuple[ActivityCases, ...] = ()  # happened where the model does not allow it
    unfinished_cases: int = 0  # ended with the model expecting more
    expected_next: tuple[ActivityCases, ...] = ()  # what the model expected when they ended

    @property
    def fitting_share(self) -> float:
        """Share of cases the model replays without missing or remaining tokens."""
        return self.fitting_cases / self.cases if self.cases else 0.0

    def findings(self, top: int = 5) -> list[str]:
        """The main deviations, in sentences a process owner reads."""
        lines = [
            f"{self.fitting_cases} of {self.cases} cases ({self.fitting_share:.1%}) follow the "
            f"documented model {Path(self.model).name}; replay fitness "
            f"{self.fitness['log_fitness']:.3f}."
        ]
        lines += [f"Activity {a.activity!r} happens in {_cases(a.cases)} but is not in the "
                  "documented model." for a in self.not_in_model[:top]]
        lines += [f"Activity {a.activity!r} happens in {_cases(a.cases)} where the model does not "
                  "allow it (a step the model requires before it is missing, or comes later)."
                  for a in self.out_of_order[:top]]
        if self.unfinished_cases:
            expected = ", ".join(f"{a.activity!r} ({_cases(a.cases)})" for a in self.expected_next[:top])
            lines.append(f"{_cases(self.unfinished_cases)} leave steps of the model undone"
                         + (f"; at their end the model still expected {expected}." if expected else "."))
        lines += [f"Model activity {label!r} is read as the log's {name!r}."
                  for label, name in self.matched.items()]
        lines += [f"Model activity {label!r} never happens in the log (no activity of that "
                  "name)." for label in self.not_in_log]
        return lines


def discover_model(
    data: EventsLike,
    coverage: float = DEFAULT_COVERAGE,
    noise_threshold: float = DEFAULT_NOISE_THRESHOLD,
    lifecycle: str | None = DEFAULT_LIFECYCLE,
) -> DiscoveredModel:
    """Inductive-miner model (Petri net, BPMN) of the top variants covering `coverage` of cases."""
    if not 0 < coverage <= 1:
        raise MiningError(f"coverage must be in (0, 1], got {coverage}")
    if not 0 <= noise_threshold < 1:
        raise MiningError(f"noise_threshold must be in [0, 1), got {noise_threshold}")
    events, used = _select(data, lifecycle)
    # Names as the BPMN can hold them: pm4py writes them into XML as they are.
    df = events.df.with_columns(pl.col("activity").str.replace_all(NOT_XML, "\ufffd"))
    if df.is_empty():
        raise MiningError("no events to discover a model from")
    traces = df.group_by("case_id", maintain_order=True).agg(pl.col("activity").alias("trace"))
    # the order of discover_variants: count desc, then activity sequence
    variants = (traces.group_by("trace").len().sort(["len", "trace"], descending=[True, False])
                .with_columns((pl.col("len").cum_sum() - pl.col("len")).alias("before")))
    needed = math.ceil(round(coverage * traces.height, 9))  # cases to cover, exact at 1.0
    kept = variants.filter(pl.col("before") < needed)
    cases = traces.join(kept.select("trace"), on="trace").select("case_id")
    tree = _pm4py.discover_process_tree(df.join(cases, on="case_id", how="semi"), noise_threshold)
    net, initial, final = _pm4py.convert_to_petri_net(tree)
    bpmn = _pm4py.convert_to_bpmn(tree)
    return DiscoveredModel(
        net, initial, final, bpmn, _pm4py.bpmn_xml(bpmn), _pm4py.pnml_text(net, initial, final),
        coverage=coverage, noise_threshold=noise_threshold, lifecycle=used,
        variants_kept=kept.height, variants_total=variants.height,
        cases_covered=cases.height, cases_total=traces.height,
        activities_not_in_model=_not_in(df, _labels(net)),
    )


def load_reference_model(path: str | Path) -> tuple[Any, Any, Any]:
    """A documented model (.bpmn converted by pm4py, or .pnml) as (net, initial, final marking)."""
    source = Path(path)
    kind = source.suffix.lower()
    if kind not in MODEL_FORMATS:
        raise ModelFileError(f"{source}: unknown model format {source.suffix!r} "
                             f"(expected one of {', '.join(MODEL_FORMATS)})")
    if not source.is_file():
        raise ModelFileError(f"{source}: no such model file")
    name = "BPMN" if kind == ".bpmn" else "PNML"
    try:
        if kind == ".bpmn":
            net, initial, final = _pm4py.convert_to_petri_net(_pm4py.read_bpmn(source))
        else:
            net, initial, final = _pm4py.read_pnml(source)
    except Pm4pyError as exc:
        raise ModelFileError(f"{source}: cannot read the {name} model: {exc}") from exc
    # pm4py reads any well-formed XML without complaint, e.g. a PNML as BPMN: an empty model
    if not _labels(net):
        raise ModelFileError(f"{source}: the {name} model has no activities (is it a {name} file?)")
    if not initial or not final:
        which = "initial" if not initial else "final"
        raise ModelFileError(f"{source}: the {name} model has no {which} marking")
    return net, initial, final


def check_conformance(
    data: EventsLike, model: str | Path, lifecycle: str | None = DEFAULT_LIFECYCLE
) -> Conformance:
    """Token-based replay of the events on the reference model in `model` (.bpmn or .pnml)."""
    net, initial, final = load_reference_model(model)
    events, used = _select(data, lifecycle)
    df = events.df
    if df.is_empty():
        raise MiningError("no events to check against the model")
    matched, not_in_log = _match_labels(net, df.get_column("activity").unique().to_list())
    results = _pm4py.token_based_replay(df, net, initial, final)
    out_of_order: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    unfinished = 0
    for result in results:
        out_of_order.update({t.label for t in result["transitions_with_problems"] if t.label})
        if result["remaining_tokens"]:
            unfinished += 1
            expected.update({t.label for t in result["enabled_transitions_in_marking"] if t.label})
    return Conformance(
        model=str(model), fitness=_pm4py.replay_fitness(results), cases=len(results),
        fitting_cases=sum(1 for result in results if result["trace_is_fit"]), lifecycle=used,
        not_in_model=_not_in(df, _labels(net)), not_in_log=not_in_log, matched=matched,
        out_of_order=_ranked(out_of_order), unfinished_cases=unfinished,
        expected_next=_ranked(expected),
    )


def _select(data: EventsLike, lifecycle: str | None) -> tuple[Events, str | None]:
    """The prepared events, restricted to `lifecycle` when the frame has any such events."""
    if lifecycle is not None and lifecycle not in LIFECYCLES:
        raise FrameError(f"unknown lifecycle {lifecycle!r}; allowed: {LIFECYCLES}")
    events = prepare(data)
    if lifecycle is not None and events.df.get_column("lifecycle").eq(lifecycle).any():
        return only(events, lifecycle), lifecycle
    return events, None


def _labels(net: Any) -> set[str]:
    """The visible transition labels (activities) of a Petri net."""
    return {t.label for t in net.transitions if t.label is not None}


def _not_in(df: pl.DataFrame, labels: set[str]) -> tuple[ActivityCases, ...]:
    """Activities of the frame outside `labels`, with their case counts, most cases first."""
    counts = (df.filter(~pl.col("activity").is_in(list(labels)))
              .group_by("activity").agg(pl.col("case_id").n_unique().alias("cases"))
              .sort(["cases", "activity"], descending=[True, False]))
    return tuple(ActivityCases(a, int(n)) for a, n in counts.iter_rows())


def _cases(n: int) -> str:
    return f"{n} case" if n == 1 else f"{n} cases"


def _ranked(counter: Counter[str]) -> tuple[ActivityCases, ...]:
    return tuple(ActivityCases(a, n) for a, n in sorted(counter.items(), key=lambda x: (-x[1], x[0])))


def _normal(name: str) -> str:
    """A label as compared across model and log: case, spacing and a ProM '+complete' ignored."""
    text = " ".join(name.split()).casefold()
    return text.removesuffix("+complete").rstrip()


def _match_labels(net: Any, activities: Iterable[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Relabel the net's transitions to the log's spelling; (relabelled, unmatched labels)."""
    names = set(activities)
    by_normal: dict[str, list[str]] = {}
    for name in names:
        by_normal.setdefault(_normal(name), []).append(name)
    matched: dict[str, str] = {}
    unmatched: set[str] = set()
    for transition in net.transitions:
        label = transition.label
        if label is None or label in names:
            continue
        candidates = by_normal.get(_normal(label), [])
        if len(candidates) == 1:  # an ambiguous spelling stays unmatched
            matched[label] = transition.label = candidates[0]
        else:
            unmatched.add(label)
    return matched, tuple(sorted(unmatched))
