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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import polars as pl

from alerts.anchors import anchored
from alerts.calendar import WorkCalendar
from alerts.context import BaselineAnchor, Rule, RuleContext, Scope
from alerts.duration import Duration, parse_duration
from alerts.errors import DateRangeError
from alerts.thresholds import Rework as ReworkSettings
from mining.frame import Events
from mining.rework import Rework, discover_loops, discover_rework, rework_basis
from schemas.alerts import Finding
from schemas.event import to_time_us

MIN_Z: Final = 3.0  # one-sided test every shift must also pass
NONE_SHARE: Final = 0.005  # a baseline share below this counts as "almost none"
MAX_CASES_LISTED: Final = 50
REQUEST_PREFIXES: Final = ("request", "ask")
ALL_LOOPS: Final = 10_000


def window_start(calendar: WorkCalendar, end: datetime, length: Duration) -> datetime:
    """The start of a window of ``length`` ending at ``end``: business time counts whole
    business days back (to local midnight), wall-clock time is subtracted as it is; a start
    before year 1 raises ``DateRangeError``."""
    if not length.business:
        try:
            return end - timedelta(seconds=length.wall_seconds)
        except OverflowError:
            raise DateRangeError(f"a window of {length} before {end.isoformat()} starts before "
                                 "year 1") from None
    days = max(1, math.ceil(calendar.seconds(length) / calendar.day_seconds - 1e-9))
    first = calendar.add_business_days(calendar.business_day_of(end), -days)
    return datetime.combine(first, time(0), tzinfo=ZoneInfo(calendar.timezone))


def utc(moment: datetime) -> datetime:
    """An aware moment in UTC, comparable with the event frame's timestamps."""
    return moment.astimezone(UTC)


def change_point(hits: npt.NDArray[np.bool_], p0: npt.NDArray[np.float64],
                 p1: npt.NDArray[np.float64]) -> int | None:
    """Index of the first hit after a one-sided Bernoulli CUSUM (p0 -> p1 per case) last left
    zero before its maximum; None when the statistic never rises."""
    if hits.size == 0:
        return None
    llr = np.where(hits, np.log(p1 / p0), np.log((1 - p1) / (1 - p0)))
    cum = np.concatenate([[0.0], np.cumsum(llr)])
    stat = cum - np.minimum.accumulate(cum)
    top = int(np.argmax(stat))
    if stat[top] <= 0:
        return None
    low = cum[: top + 1]
    start = int(np.flatnonzero(low == low.min())[-1])
    after = np.flatnonzero(hits[start:top])
    return start + int(after[0]) if after.size else None


@dataclass(frozen=True)
class Shift:
    """Recent hits against what the baseline predicts for cases of the same ages."""

    recent_hits: int
    recent_n: int
    baseline_hits: int
    baseline_n: int
    expected: float
    """Recent hits expected from the baseline at the recent cases' ages."""
    z: float
    since_hits: int = 0
    """Hits among the cases started since the change point (the recent window without one)."""
    since_cases: int = 0

    @property
    def since_share(self) -> float:
        return self.since_hits / self.since_cases if self.since_cases else 0.0

    @property
    def recent_share(self) -> float:
        return self.recent_hits / self.recent_n

    @property
    def baseline_share(self) -> float:
        return self.baseline_hits / self.baseline_n if self.baseline_n else 0.0

    def supported(self, s: ReworkSettings, minimum: int, fraction: float = 1.0) -> bool:
        """Minimum support: enough of the cases the sentence counts (started since) hit."""
        return (self.since_hits >= fraction * max(minimum, s.min_support_cases)
                and self.since_share >= fraction * s.min_support_share)

    def above(self, s: ReworkSettings, fraction: float = 1.0, z: float = MIN_Z,
              ratio: bool = True) -> bool:
        """Clearly above the age-adjusted baseline: ratio (unless ``ratio`` is False), increase
        and z guards all hold, each at ``fraction`` of its excess; and the share the sentence
        states (since) is above the baseline's, so it never says an increase that is not one."""
        times = 1 + fraction * (s.min_ratio - 1)
        return ((not ratio or self.recent_hits >= times * self.expected)
                and self.recent_hits >= self.expected + fraction * s.min_share_increase * self.recent_n
                and self.z >= z and self.since_share > self.baseline_share)

    def level(self, s: ReworkSettings, minimum: int, new: bool = False,
              ratio: bool = True) -> bool | None:
        """True: the shift opens an alert; False: it only holds one open (above the clearing
        thresholds, ``clear_z`` and ``clear_fraction``: hysteresis); None: neither. ``new``: a
        subject the baseline never had, which needs only the support."""
        f = s.clear_fraction
        if self.supported(s, minimum) and (new or self.above(s, ratio=ratio)):
            return True
        if self.supported(s, minimum, f) and (new or self.above(s, f, s.clear_z, ratio)):
            return False
        return None

    def evidence(self) -> dict[str, Any]:
        return {"since_cases_hit": self.since_hits, "since_cases": self.since_cases,
                "recent_cases_hit": self.recent_hits, "recent_share": self.recent_share,
                "baseline_cases_hit": self.baseline_hits, "baseline_share": self.baseline_share,
                "expected_share_at_same_age": self.expected / self.recent_n,
                "z": round(self.z, 2)}


@dataclass(frozen=True)
class _Windows:
    """The cases in scope in start order (recent and baseline) and their completions."""

    cases: pl.DataFrame  # case_id, start (UTC), recent (bool), sorted by start
    basis: pl.DataFrame  # the completions (or all events) of those cases, in case order
    everything: pl.DataFrame  # the completions (or all events) of every case, up to now
    starts: pl.DataFrame  # case_id, start (UTC), day (local date) of every case, by start
    lifecycle: str | None
    now: datetime
    recent_start: datetime
    baseline_start: datetime
    calendar: WorkCalendar
    settings: ReworkSettings
    baseline_end: datetime
    """The baseline's end: the recent window's start, or an anchor's day."""

    @property
    def recent_n(self) -> int:
        return int(self.cases["recent"].sum())

    @property
    def baseline_n(self) -> int:
        return self.cases.height - self.recent_n

    def events(self, recent: bool) -> Events:
        """The scoped events of the recent (or baseline) cases, still in case order."""
        ids = self.cases.filter(pl.col("recent") == recent)["case_id"]
        return Events(self.basis.filter(pl.col("case_id").is_in(ids.implode())), self.lifecycle)

    def since(self, day: date) -> pl.DataFrame:
        """Every case started on ``day`` (local) or later, up to now: case_id, start, day."""
        return self.starts.filter(pl.col("day") >= day)

    def events_of(self, cases: pl.DataFrame) -> Events:
        """The scoped events of some cases (a frame with case_id)."""
        return Events(self.everything.join(cases.select("case_id"), on="case_id", how="semi"),
                      self.lifecycle)

    def measure(self, hits: pl.DataFrame) -> tuple[Shift, date, tuple[str, ...]]:
        """The shift of one subject's hits (case_id, hit time), its since and recent case ids."""
        table = self.cases.join(hits, on="case_id", how="left", maintain_order="left")
        start = table["start"].dt.epoch("us").to_numpy()
        hit_at = table["hit"].dt.epoch("us").to_numpy(allow_copy=True)
        hit = ~np.isnan(hit_at.astype(np.float64))
        recent = table["recent"].to_numpy()
        n_base, n_recent = int((~recent).sum()), int(recent.sum())
        delays = np.sort((hit_at[hit & ~recent] - start[hit & ~recent]).astype(np.float64))
        ages = (_us(self.now) - start).astype(np.float64)
        p0 = np.searchsorted(delays, ages, side="right") / max(n_base, 1)
        p0 = np.where(recent, p0, delays.size / max(n_base, 1))
        expected = float(p0[recent].sum())
        # the spread of a share the baseline never showed is that of half a case in it, not 0:
        # z stays a finite figure (never Infinity in the evidence) and large when it should be
        pv = np.clip(p0, 0.5 / max(n_base, 1), 1 - 0.5 / max(n_base, 1))
        spread = float((pv * (1 - pv))[recent].sum())
        spread += float(np.sqrt(pv * (1 - pv) / max(n_base, 1))[recent].sum()) ** 2
        observed = int((hit & recent).sum())
        z = (observed - expected) / math.sqrt(spread) if spread > 0 else 0.0
        index = self._change(hit, p0, observed / max(expected, 1.0))
        if index is not None:  # once more, with the shift seen after that first estimate
            seen = float(hit[index:].sum()) / max(float(p0[index:].sum()), 1.0)
            index = self._change(hit, p0, seen)
        since = self.calendar.business_day_of(
            self.recent_start if index is None else table["start"][index])
        midnight = datetime.combine(since, time(0), tzinfo=ZoneInfo(self.calendar.timezone))
        first = int(np.searchsorted(start, _us(midnight)))  # every case started that day on
        shift = Shift(observed, n_recent, int((hit & ~recent).sum()), n_base, expected, z,
                      since_hits=int(hit[first:].sum()), since_cases=int(hit.size - first))
        ids = table[first:].filter(pl.col("hit").is_not_null())["case_id"]
        return shift, since, tuple(sorted(ids)[:MAX_CASES_LISTED])

    def _change(self, hit: npt.NDArray[np.bool_], p0: npt.NDArray[np.float64],
                ratio: float) -> int | None:
        """The CUSUM change point against p1 = p0 x ratio (at least the smallest firing shift)."""
        s = self.settings
        floor = np.maximum(p0, 0.5 / max(self.baseline_n, 1))
        ratio = max(s.min_ratio, ratio)
        p1 = np.minimum(np.maximum(floor * ratio, floor + s.min_share_increase), 0.99)
        return change_point(hit, np.minimum(floor, 0.98), p1)

    def window_evidence(self) -> dict[str, Any]:
        s = self.settings
        return {"recent": {"from": self.recent_start.isoformat(), "to": self.now.isoformat(),
                           "cases": self.recent_n, "length": s.recent},
                "baseline": {"from": self.baseline_start.isoformat(),
                             "to": self.baseline_end.isoformat(), "cases": self.baseline_n,
                             "length": s.baseline}}


def _us(moment: datetime) -> int:
    return to_time_us(utc(moment))


def _midnight(calendar: WorkCalendar, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(calendar.timezone))


def baseline_span(calendar: WorkCalendar, now: datetime, s: ReworkSettings,
                  anchor: BaselineAnchor | None = None) -> tuple[datetime, datetime, datetime]:
    """The recent window's start and the baseline's start and end: the sliding ones, the
    ``baseline`` before a frozen anchor's onset, or an accepted anchor's span; never reaching
    into the recent window."""
    recent_start = window_start(calendar, now, parse_duration(s.recent))
    end = recent_start
    if anchor is not None:
        end = min(end, _midnight(calendar, anchor.until))
    start = (window_start(calendar, end, parse_duration(s.baseline))
             if anchor is None or anchor.start is None else _midnight(calendar, anchor.start))
    return recent_start, start, end


def _windows(ctx: RuleContext, s: ReworkSettings,
             anchor: BaselineAnchor | None = None) -> _Windows | None:
    calendar = ctx.process.calendar
    recent_start, baseline_start, baseline_end = baseline_span(calendar, ctx.now, s, anchor)
    basis = rework_basis(ctx.events)
    df = basis.df.filter(pl.col("timestamp") <= utc(ctx.now))
    starts = (df.group_by("case_id").agg(pl.col("timestamp").min().alias("start"))
              .filter((pl.col("start") >= utc(baseline_start))
                      & ((pl.col("start") < utc(baseline_end))
                         | (pl.col("start") >= utc(recent_start))))
              .with_columns((pl.col("start") >= utc(recent_start)).alias("recent"))
              .sort(["start", "case_id"]))
    if starts.is_empty():
        return None
    scoped = df.filter(pl.col("case_id").is_in(starts["case_id"].implode()))
    every = (df.group_by("case_id").agg(pl.col("timestamp").min().alias("start"))
             .with_columns(pl.col("start").dt.convert_time_zone(calendar.timezone).dt.date()
                           .alias("day"))
             .sort(["start", "case_id"]))
    return _Windows(starts, scoped, df, every, basis.lifecycle, ctx.now, recent_start,
                    baseline_start, calendar, s, baseline_end)


def _second_times(w: _Windows) -> pl.DataFrame:
    """When each (case, activity) happened a second time: case_id, activity, hit."""
    nth = pl.int_range(pl.len()).over("case_id", "activity")
    return (w.basis.with_columns(nth.alias("nth")).filter(pl.col("nth") == 1)
            .select("case_id", "activity", pl.col("timestamp").alias("hit")))


def _loop_times(w: _Windows, cycles: Iterable[tuple[str, ...]]) -> pl.DataFrame:
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


def _loops(w: _Windows, process: str, judged: Callable[[tuple[str, ...]], bool]) -> list[Finding]:
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


def _requests(w: _Windows, seconds: pl.DataFrame, process: str, scope: Scope) -> list[Finding]:
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


def _split(w: _Windows, cases: pl.DataFrame, activity: str) -> Rework | None:
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


def _drift(w: _Windows, redone: pl.DataFrame, activity: str, process: str) -> Finding | None:
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


def _cap(w: _Windows, activity: str, process: str) -> Finding | None:
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


def _activities(w: _Windows, seconds: pl.DataFrame, process: str,
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
    w = _windows(ctx, s, anchor)
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
    return start >= _midnight(calendar, anchor.until)


rework = anchored("rework", _rework, _expired)
"""Rework findings for one process, each key judged against its anchor (``alerts.anchors``)."""

REWORK: Final = Rule(name="rework", settings=ReworkSettings, run=rework, baseline=True)
