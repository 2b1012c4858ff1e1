"""Rework rule: an activity redone more often, a loop that newly appeared, repeated requests.

Method. Cases are split by when they started: the recent window (``recent``, default the last
20 business days up to now) against the baseline (``baseline``, default the 60 days before it),
each needing ``min_cases`` cases. A case "hits" when, on its completions, an activity happens a
second time (rework), a cycle of the map closes (loop), or a request activity is asked a second
time (repeated request). Three kinds of finding:

- ``rework at A``: the share of cases redoing A is clearly above the baseline (below); the
  summary says how many of the cases it counts (those started since the change) were repeats
  (same person) and redos (someone else), as ``mining.rework`` counts them.
- ``rework at A above the 30% cap``: the recent share is above the fixed ``max_share``,
  whatever the baseline (a level, not an increase; said only when no drift of A is). Since:
  the earliest day from which the cases started that day or later redo A above the cap.
- ``loop a -> b``: a cycle of the recent map (``mining.rework.discover_loops``) that at least
  ``min_loop_cases`` recent cases go round and no baseline case did (or clearly more often);
  a self-loop (a -> a) is left to ``rework at a``.
- ``repeated request: A``: a request activity (``request_activities``, default the ones named
  "Request ..." or "Ask ...") asked twice or more in at least ``min_repeat_requests`` recent
  cases, clearly above the baseline share or where the baseline had almost none (< 0.5 %).

Quiet by design. Every count a sentence states comes from the cases started since its "since";
at least ``min_support_cases`` (and ``min_loop_cases`` / ``min_repeat_requests``) of them, and
``min_support_share`` of them, must hit. Hysteresis: a finding that is only above the clearing
levels (z >= ``clear_z``, shares at ``clear_fraction`` of the firing ones) is returned with
``opens=False``: it keeps an open alert open and never opens one.

"Clearly above". Recent cases are young: a case that started yesterday had no time to be asked
twice, so its raw share is not comparable with the finished baseline cases'. Each recent case is
compared with the baseline *at the same age*: its expected hit probability is F(age), the share
of baseline cases that had hit within that age. The expected recent hits E = sum F(age_i); the
observed hits must be at least ``min_ratio`` x E and ``min_share_increase`` x n above it, and pass
a one-sided test z = (observed - E) / sd >= 3 (sd from the binomial spread plus the baseline's own
sampling error), p ~ 0.001 per subject and evaluation. The guards together keep clean simulated
years of onboarding, payments and claims quiet, and the recent share stays unbiased, so a
shift is seen as soon as enough shifted cases have aged. An activity that a firing loop or
repeated request already explains, or a request activity (the repeated-request finding's
subject), is not reported as ``rework at``.

Anchored baselines (``alerts.anchors``). A key with an open episode is judged against the
cases started in the ``baseline`` before its onset day (not before the recent window): the
baseline stays where it was, and the finding (hysteresis included) holds while the recent share
is not back within it. A key accepted as normal is judged against the cases started from its
episode's onset up to the acceptance (up to the recent window, if that starts earlier), until
the sliding baseline starts after the acceptance; the ``above the cap`` finding is a fixed level,
not a baseline, so once accepted it stays quiet for good. Loops and repeated requests are
anchored the same way, each by its own key.

Since when. A one-sided Bernoulli CUSUM over the cases in start order, each with its own p0 (the
age-adjusted baseline) against p1 = p0 x the shift seen (at least the smallest shift that would
fire), run twice (the second time with the shift seen after the first estimate): the change is
at the first hit after the CUSUM's last zero before its maximum; ``since`` is the day that case
started, and the summary counts the cases started from that day on. On the simulator (5 seeds)
``since`` falls on the injected onset; a new loop in 10 % of new cases fires 3-4 business days
after its onset, 15 % of cases asked again for documents (against a natural 7-8 %) 9-12 days
after, the time it takes that many shifted cases to fill the recent window.

The windows, the age-adjusted comparison (``Shift``) and the "since when" dating live in
``alerts.rules.rework_shift``; this module says which subjects are judged and what each finding
says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, Final

import numpy as np
import polars as pl

from alerts.anchors import anchored
from alerts.context import BaselineAnchor, Rule, RuleContext, Scope
from alerts.rules.rework_shift import (
    MAX_CASES_LISTED,
    MIN_Z,
    Shift,
    Windows,
    baseline_span,
    case_windows,
    change_point,
    midnight,
    utc,
    window_start,
)
from alerts.thresholds import Rework as ReworkSettings
from mining.rework import Rework, discover_loops, discover_rework
from schemas.alerts import Finding

__all__ = ["ALL_LOOPS", "MAX_CASES_LISTED", "MIN_Z", "NONE_SHARE", "REQUEST_PREFIXES", "REWORK",
           "Shift", "baseline_span", "change_point", "rework", "utc", "window_start"]

NONE_SHARE: Final = 0.005  # a baseline share below this counts as "almost none"
REQUEST_PREFIXES: Final = ("request", "ask")
ALL_LOOPS: Final = 10_000


def _second_times(w: Windows) -> pl.DataFrame:
    """When each (case, activity) happened a second time: case_id, activity, hit."""
    nth = pl.int_range(pl.len()).over("case_id", "activity")
    return (w.basis.with_columns(nth.alias("nth")).filter(pl.col("nth") == 1)
            .select("case_id", "activity", pl.col("timestamp").alias("hit")))


def _loop_times(w: Windows, cycles: Iterable[tuple[str, ...]]) -> pl.DataFrame:
    """When each case first closed each cycle: case_id, hit, cycle (" -> " joined).

    A case closes a cycle c0 -> ... -> ck-1 where its completions hold a rotation of it followed
    by that rotation's first activity again (k + 1 consecutive events of one case). One pass per
    cycle length over activity codes, joined to every rotation of every cycle of that length,
    as ``mining.rework.discover_loops`` counts them."""
    cycles = list(cycles)
    if not cycles:
        return pl.DataFrame()
    codes = {a: i for i, a in enumerate(sorted({a for c in cycles for a in c}))}
    patterns = pl.DataFrame(
        [(",".join(str(codes[a]) for a in c[r:] + c[:r] + (c[r],)), " -> ".join(c))
         for c in cycles for r in range(len(c))],
        schema={"key": pl.String, "cycle": pl.String}, orient="row").lazy()
    code = pl.col("activity").replace_strict(codes, default=None, return_dtype=pl.Int32)
    frame = w.basis.lazy().select("case_id", "timestamp", code.alias("c0"))
    hits = []
    for k in sorted({len(c) for c in cycles}):
        shifted = [pl.col("c0").shift(-j).alias(f"c{j}") for j in range(1, k + 1)]
        closes = (pl.col("case_id").shift(-k) == pl.col("case_id")) & (pl.col("c0") == pl.col(f"c{k}"))
        key = pl.concat_str([pl.col(f"c{j}") for j in range(k + 1)], separator=",")
        windows = (frame.with_columns(*shifted, pl.col("timestamp").shift(-k).alias("hit"))
                   .filter(closes).select("case_id", key.alias("key"), "hit"))
        hits.append(windows.join(patterns, on="key").select("case_id", "hit", "cycle"))
    return (pl.concat(hits).group_by("case_id", "cycle").agg(pl.col("hit").min())
            .select("case_id", "hit", "cycle").collect())


def _loops(w: Windows, process: str, judged: Callable[[tuple[str, ...]], bool]) -> list[Finding]:
    """``loop ...`` findings of the cycles ``judged`` (their own key, or an activity of theirs
    whose ``rework at`` they may explain)."""
    s = w.settings
    # a self-loop (a -> a) is the activity's own rework: "rework at a" says it, with who redid it
    candidates = [lp.cycle for lp in discover_loops(w.events(True), max_loops=ALL_LOOPS)
                  if lp.cases >= s.clear_fraction * s.min_loop_cases and len(lp.cycle) > 1
                  and judged(lp.cycle)]
    times = _loop_times(w, candidates)
    found = []
    for cycle in candidates:
        name = " -> ".join(cycle)
        hits = times.filter(pl.col("cycle") == name).select("case_id", "hit")
        shift, since, ids = w.measure(hits)
        new = shift.baseline_hits == 0
        opens = shift.level(s, s.min_loop_cases, new=new)
        if opens is None:
            continue
        was = "none" if new else f"{shift.baseline_share:.1%}"
        found.append(Finding(
            rule=REWORK.name, process=process, subject=f"loop {name}", severity=s.severity,
            summary=(f"{'New' if new else 'Growing'} rework loop {name} -> {cycle[0]}: "
                     f"{shift.since_hits} {process} cases since {since} "
                     f"({shift.since_share:.1%} of the cases started since; baseline {was})"),
            evidence={"cycle": list(cycle), **shift.evidence(), "case_ids": list(ids),
                      **w.window_evidence()},
            since=since, cases=ids, opens=opens))
    return found


def _is_request(activity: str, s: ReworkSettings) -> bool:
    if s.request_activities is not None:
        return activity in s.request_activities
    return activity.casefold().startswith(REQUEST_PREFIXES)


def _asked_again(activity: str) -> str:
    """The repetition in the customer's terms: "Request missing documents" -> "customers asked
    again for missing documents"; a request named otherwise is named as it is."""
    words = activity.split(maxsplit=1)
    if len(words) < 2 or not words[0].casefold().startswith(REQUEST_PREFIXES):
        return f"{activity} asked again"
    rest = words[1]
    return f"customers asked again for {rest[4:] if rest.casefold().startswith('for ') else rest}"


def _requests(w: Windows, seconds: pl.DataFrame, process: str, scope: Scope) -> list[Finding]:
    s = w.settings
    found = []
    for activity in sorted(a for a in seconds["activity"].unique() if _is_request(a, s)
                           and scope.subject(f"repeated request: {a}")):
        shift, since, ids = w.measure(seconds.filter(pl.col("activity") == activity))
        # a request the baseline almost never repeated needs no ratio, only the z-test
        opens = shift.level(s, s.min_repeat_requests, ratio=shift.baseline_share >= NONE_SHARE)
        if opens is None:
            continue
        found.append(Finding(
            rule=REWORK.name, process=process, subject=f"repeated request: {activity}",
            severity=s.severity,
            summary=(f"{_asked_again(activity)}: {shift.since_hits} cases since {since} "
                     f"({shift.since_share:.1%} of the cases started since; baseline "
                     f"{shift.baseline_share:.1%})"),
            evidence={"activity": activity, **shift.evidence(), "case_ids": list(ids),
                      **w.window_evidence()},
            since=since, cases=ids, opens=opens))
    return found


def _split(w: Windows, cases: pl.DataFrame, activity: str) -> Rework | None:
    """Repeats and redos of ``activity`` counted over exactly ``cases`` (the sentence's set)."""
    return next((r for r in discover_rework(w.events_of(cases)) if r.activity == activity), None)


def _who(split: Rework | None) -> str:
    if split is None:
        return ""
    return (f": {split.repeat_cases} repeated by the same person, "
            f"{split.redo_cases} redone by someone else")


def _split_evidence(split: Rework | None) -> dict[str, Any]:
    return {"repeat_cases": split.repeat_cases if split else 0,
            "redo_cases": split.redo_cases if split else 0,
            "self_loop_cases": split.self_loop_cases if split else 0,
            "loop_cases": split.loop_cases if split else 0}


def _drift(w: Windows, redone: pl.DataFrame, activity: str, process: str) -> Finding | None:
    """``rework at A``: A redone clearly more often than in the baseline, since its change."""
    s = w.settings
    shift, since, ids = w.measure(redone)
    if shift.baseline_n < s.min_cases:
        return None
    opens = shift.level(s, s.min_support_cases)
    if opens is None:
        return None
    # the split over the very cases the share counts (an anchored episode counts its recent
    # window's, not every case started since its onset: "65 repeated" about 9 cases)
    counted = w.since(since).join(w.cases.select("case_id"), on="case_id", how="semi")
    split = _split(w, counted, activity)
    hits, cases = shift.since_hits, shift.since_cases
    return Finding(
        rule=REWORK.name, process=process, subject=f"rework at {activity}", severity=s.severity,
        summary=(f"{activity} done again in {hits / cases:.1%} of {process} cases "
                 f"started since {since} ({hits} of {cases}; baseline "
                 f"{shift.baseline_share:.1%}){_who(split)}"),
        evidence={"activity": activity, **shift.evidence(), **_split_evidence(split),
                  "case_ids": list(ids), **w.window_evidence()},
        since=since, cases=ids, opens=opens)


def _cap(w: Windows, activity: str, process: str) -> Finding | None:
    """``rework at A above the cap``: A redone in more than ``max_share`` of the recent cases,
    a fixed limit whatever the baseline. Since: the earliest day from which the cases started
    that day or later, up to now, redo A in more than the cap (the longest such run)."""
    s = w.settings
    hit_ids = (w.everything.filter(pl.col("activity") == activity)
               .group_by("case_id").len().filter(pl.col("len") > 1).select("case_id"))
    recent = w.cases.filter(pl.col("recent"))
    share = recent.join(hit_ids, on="case_id", how="semi").height / max(recent.height, 1)
    limit = s.max_share if share > s.max_share else s.clear_fraction * s.max_share
    if share <= limit:
        return None
    hit = w.starts["case_id"].is_in(hit_ids["case_id"].implode()).to_numpy()
    n = hit.size
    suffix_hits = np.cumsum(hit[::-1])[::-1]
    suffix_n = n - np.arange(n)
    days = w.starts["day"].to_numpy()
    first_of_day = np.flatnonzero(np.concatenate(([True], days[1:] != days[:-1])))
    above = [i for i in first_of_day
             if suffix_hits[i] > limit * suffix_n[i] and suffix_n[i] >= s.min_cases]
    if not above:
        return None
    i = above[0]
    since: date = w.starts["day"][int(i)]
    hits, cases = int(suffix_hits[i]), int(suffix_n[i])
    if hits < s.min_support_cases:
        return None
    started = w.since(since)
    ids = tuple(sorted(started.join(hit_ids, on="case_id", how="semi")["case_id"])[:MAX_CASES_LISTED])
    split = _split(w, started, activity)
    cap = f"{s.max_share:.0%}"
    state = (f"above the {cap} cap" if limit == s.max_share
             else f"fired above the {cap} cap, clears at {limit:.0%}")
    return Finding(
        rule=REWORK.name, process=process, subject=f"rework at {activity} above the {cap} cap",
        severity=s.severity,
        summary=(f"{activity} done again in {hits / cases:.1%} of {process} cases started since "
                 f"{since} ({hits} of {cases}), {state}{_who(split)}"),
        evidence={"activity": activity, "since_cases_hit": hits, "since_cases": cases,
                  "since_share": hits / cases, "recent_cases_hit": round(share * recent.height),
                  "recent_share": share, "max_share": s.max_share, "clears_at": limit
                  if limit != s.max_share else s.clear_fraction * s.max_share,
                  **_split_evidence(split), "case_ids": list(ids), **w.window_evidence()},
        since=since, cases=ids, opens=limit == s.max_share)


def _activities(w: Windows, seconds: pl.DataFrame, process: str,
                explained: set[str], judged: Callable[[str], bool]) -> list[Finding]:
    s = w.settings
    found = []
    for figures in discover_rework(w.events(True)):
        activity = figures.activity
        if activity in explained or _is_request(activity, s) or not judged(activity):
            continue
        drift = _drift(w, seconds.filter(pl.col("activity") == activity), activity, process)
        cap = None if drift is not None else _cap(w, activity, process)
        found += [f for f in (drift, cap) if f is not None]
    return found


def _rework(ctx: RuleContext, anchor: BaselineAnchor | None, scope: Scope) -> list[Finding]:
    """Rework findings for one process: activities redone, new loops, repeated requests (only
    the subjects ``scope`` judges, and the loops that may explain their rework)."""
    s = ctx.process.rules.rework
    w = case_windows(ctx, s, anchor)
    if w is None or w.recent_n < s.min_cases:
        return []
    cap = f"{s.max_share:.0%}"

    def redone(activity: str) -> bool:  # its "rework at" keys are judged
        return scope.subject(f"rework at {activity}") or scope.subject(
            f"rework at {activity} above the {cap} cap")

    def cycle(loop: tuple[str, ...]) -> bool:  # its key, or one of its activities' rework
        return scope.subject(f"loop {' -> '.join(loop)}") or any(map(redone, loop))

    seconds = _second_times(w)
    found: list[Finding] = []
    if w.baseline_n >= s.min_cases:
        found += _loops(w, ctx.process.name, cycle)
        found += _requests(w, seconds, ctx.process.name, scope)
    explained = {a for f in found for a in f.evidence.get("cycle", [f.evidence.get("activity")])}
    found += _activities(w, seconds, ctx.process.name, explained, redone)
    if anchor is not None and anchor.accepted:  # an accepted level above the cap stays quiet
        found = [f for f in found if not _capped(f.subject)]
    return found


def _capped(subject: str) -> bool:
    return subject.startswith("rework at ") and subject.endswith("% cap")


def _expired(ctx: RuleContext, key: str, anchor: BaselineAnchor) -> bool:
    """An accepted rework level stops mattering once the sliding baseline starts after the
    acceptance; an accepted level above the cap never does."""
    if _capped(key.split("/", 2)[2]):
        return False
    calendar = ctx.process.calendar
    _, start, _ = baseline_span(calendar, ctx.now, ctx.process.rules.rework)
    return start >= midnight(calendar, anchor.until)


rework = anchored("rework", _rework, _expired)
"""Rework findings for one process, each key judged against its anchor (``alerts.anchors``)."""

REWORK: Final = Rule(name="rework", settings=ReworkSettings, run=rework, baseline=True)
