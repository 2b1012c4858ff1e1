"""End activities that mean "finished": learned once from finished history, changed only on
strong evidence.

**Finished cases.** A case is *finished* when it has had no event for longer than the
``QUIET_QUANTILE`` (p99.9) of the gaps between consecutive events of the process: quieter than
almost anything the process does between two steps (BPIC 2012 23 days, receipt 90, helpdesk 59,
the road-traffic fines 840). Only finished cases teach anything: a case still running ends
nowhere yet.

**An end activity** is one where finished cases end and *stay ended*, outcomes included (a
declined or cancelled application ends its case although a few work items are closed after it).
For each activity A, over the finished cases (the last occurrence of A in each):

- ``ends``: finished cases whose last event is A;
- ``terminal``: the share of the finished cases with A whose last event comes at most ``TAIL_S``
  (an hour) after A, leaving out the activities parallel to A (``_going_on``: receipt's T10
  and T05 close two branches done in either order): reaching A means the case is over, bar
  the bookkeeping that closes it and the other branch
  (BPIC 2012: A_DECLINED 1.0, A_CANCELLED 1.0, W_Valideren aanvraag 0.90, while a step that
  stuck cases happen to stop at, but others go on from, has the share of those stopping);
- ``stay``: of the cases that rested at A longer than a long rest (the process's p99 gap), the
  share that never resumed: ``ends / (ends + resumed)`` (a step where cases wait long and then
  go on, like BPIC's W_Nabellen offertes, 0.55, is no end).

A is an end when ``terminal >= MIN_TERMINAL`` and ``stay >= MIN_STAY`` and it ends at least
``MIN_SHARE`` of the finished cases (two at least), or, rarer, when it is nearly always last
(``terminal >= ALWAYS_TERMINAL``) in at least two finished cases: a rare withdrawal is an end
all the same. Where ``stay`` falls short on too few rests to tell (its 95 % bound reaches
``MIN_STAY``), A is *undecided*: taken as an end while nothing is kept (``provisional``), and
nothing is kept while one is undecided, up to ``DECIDE_FINISHED`` finished cases.

**Kept, changed on strong evidence.** What is learned from at least ``MIN_FINISHED`` finished
cases is kept (``KeptEnds`` in storage/end_activities.py) and reused every round; ``decide``
changes it only when a new activity qualifies and ends at least ``CHANGE_SHARE`` of the recent
finished cases (and ``CHANGE_CASES`` of them), or is nearly always last in at least
``CHANGE_ALWAYS`` of them (a path's own end, like receipt's T15), or when most cases resting at
a kept one resume (``CHANGE_CASES`` at least): each change says why. The config's
``end_activities`` override all of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import polars as pl

from mining.frame import EventsLike, prepare
from mining.rework import rework_basis
from storage.end_activities import KeptEnds

QUIET_QUANTILE: Final = 0.999
REST_QUANTILE: Final = 0.99
TAIL_S: Final = 3600.0
MIN_TERMINAL: Final = 0.4
MIN_STAY: Final = 0.9
MIN_SHARE: Final = 0.005
ALWAYS_TERMINAL: Final = 0.9
MIN_FINISHED: Final = 100
DECIDE_FINISHED: Final = 400
CHANGE_SHARE: Final = 0.05
CHANGE_CASES: Final = 30
CHANGE_ALWAYS: Final = 10
DROP_STAY: Final = 0.5
CONCURRENT: Final = 0.1
STAY_Z: Final = 1.645


@dataclass(frozen=True)
class EndEvidence:
    """What the finished history says of one activity where finished cases end."""

    activity: str
    ends: int
    """Finished cases whose last event is this activity."""
    cases: int
    """Finished cases with this activity."""
    terminal: float
    """Of those, the share whose last event is at most ``TAIL_S`` after it."""
    resumed: int
    """Cases that rested here longer than a long rest, then went on."""

    @property
    def stay(self) -> float:
        """Of the cases that rested here long, the share that never resumed."""
        rested = self.ends + self.resumed
        return self.ends / rested if rested else 0.0

    @property
    def stay_bound(self) -> float:
        """The upper one-sided 95 % (Wilson) bound of ``stay``: what the rests seen so far
        cannot rule out."""
        rested = self.ends + self.resumed
        if not rested:
            return 0.0
        z, share = STAY_Z, self.ends / rested
        centre = share + z * z / (2 * rested)
        spread = z * math.sqrt(share * (1 - share) / rested + z * z / (4 * rested * rested))
        return min(1.0, (centre + spread) / (1 + z * z / rested))

    def qualifies(self, finished: int) -> bool:
        """An end: its cases are over when they reach it, and stay over."""
        return self.stay >= MIN_STAY and self._ends_there(finished)

    def undecided(self, finished: int) -> bool:
        """Not an end on the rests seen so far, but they are too few to rule it out: it would
        qualify, and its ``stay`` falls short of ``MIN_STAY`` but not at 95 % (receipt's T10
        after eight weeks: 23 cases stayed ended, 4 went on after a long rest, 0.85)."""
        return self.stay < MIN_STAY <= self.stay_bound and self._ends_there(finished)

    def _ends_there(self, finished: int) -> bool:
        if self.ends < 2:
            return False
        return (self.terminal >= MIN_TERMINAL and self.ends >= MIN_SHARE * finished) or \
            self.terminal >= ALWAYS_TERMINAL


@dataclass(frozen=True)
class Learning:
    """End activities learned from a process's finished history at one moment."""

    at: datetime
    finished: int
    """Finished cases (idle longer than ``quiet_s``)."""
    quiet_s: float
    evidence: tuple[EndEvidence, ...]
    """Every activity of the finished cases where one ends or where cases resumed after a
    long rest, most ends first."""

    @property
    def chosen(self) -> tuple[str, ...]:
        """The end activities, most ends first."""
        return tuple(e.activity for e in self.evidence if e.qualifies(self.finished))

    @property
    def undecided(self) -> tuple[str, ...]:
        """Activities the finished history cannot yet rule in or out (``EndEvidence.undecided``)."""
        return tuple(e.activity for e in self.evidence if e.undecided(self.finished))

    @property
    def provisional(self) -> tuple[str, ...]:
        """What to take as ends while nothing is kept: the chosen and the undecided, so that a
        case resting where cases may well end is not listed as stuck on thin evidence."""
        return self.chosen + self.undecided

    @property
    def enough(self) -> bool:
        """Enough finished cases to keep what was learned: ``MIN_FINISHED``, and no activity
        left undecided unless there are ``DECIDE_FINISHED``."""
        return self.finished >= MIN_FINISHED and (
            not self.undecided or self.finished >= DECIDE_FINISHED)

    def of(self, activity: str) -> EndEvidence | None:
        """The evidence on one activity, None where no finished case ends there and none
        resumed after resting there."""
        return next((e for e in self.evidence if e.activity == activity), None)

    def shares(self, activities: tuple[str, ...]) -> dict[str, float]:
        """The share of the finished cases each of ``activities`` ends."""
        out = {}
        for activity in activities:
            found = self.of(activity)
            out[activity] = round(found.ends / self.finished, 4) if found and self.finished else 0.0
        return out


def learn(events: EventsLike, now: datetime | None = None) -> Learning:
    """What the events up to ``now`` (their latest when None) say about where cases end."""
    basis = rework_basis(prepare(events)).df
    if now is not None:
        basis = basis.filter(pl.col("timestamp") <= now.astimezone(UTC))
    at = now or (basis["timestamp"].max() if basis.height else datetime.now(UTC))
    assert isinstance(at, datetime)
    if basis.height == 0:
        return Learning(at, 0, 0.0, ())
    table = basis.select("case_id", "activity", "timestamp").with_columns(
        pl.col("timestamp").shift(-1).over("case_id").alias("next"),
        pl.col("timestamp").last().over("case_id").alias("last"))
    gaps = (table["next"] - table["timestamp"]).dt.total_seconds().drop_nulls()
    quiet = float(gaps.quantile(QUIET_QUANTILE) or 0.0) if gaps.len() else 0.0
    rest = float(gaps.quantile(REST_QUANTILE) or 0.0) if gaps.len() else 0.0
    reference = pl.lit(at.astimezone(UTC)).cast(pl.Datetime("us", "UTC"))
    idle = (reference - pl.col("last")).dt.total_seconds()
    gap = (pl.col("next") - pl.col("timestamp")).dt.total_seconds()
    resumed = (table.filter(gap > rest).group_by("activity").agg(pl.len().alias("resumed")))
    done = table.filter(idle > quiet)
    finished = int(done["case_id"].n_unique())
    per_case = done.group_by("case_id", "activity").agg(
        pl.col("timestamp").max().alias("at"), pl.col("last").first())
    per_case = per_case.join(_going_on(per_case), on=["case_id", "activity"], how="left")
    stats = (per_case.group_by("activity").agg(
        ((pl.col("last") - pl.col("at")).dt.total_seconds() == 0).sum().alias("ends"),
        pl.len().alias("cases"),
        ((pl.col("on").fill_null(pl.col("at")) - pl.col("at")).dt.total_seconds() <= TAIL_S)
        .mean().alias("terminal"))
        .join(resumed, on="activity", how="left")
        .filter((pl.col("ends") > 0) | (pl.col("resumed") > 0))
        .sort(["ends", "activity"], descending=[True, False]))
    evidence = tuple(EndEvidence(a, int(e), int(c), float(t), int(r or 0))
                     for a, e, c, t, r in stats.select(
                         "activity", "ends", "cases", "terminal", "resumed").iter_rows())
    return Learning(at, finished, quiet, evidence)


def _going_on(per_case: pl.DataFrame) -> pl.DataFrame:
    """case_id, activity, on: the case's latest event after the activity's last occurrence that
    is not of a parallel activity (``CONCURRENT``), where there is one.

    Two activities are parallel where, over the finished cases doing both, either's last
    occurrence comes first in at least ``CONCURRENT`` of them (and two cases): receipt's T10
    closes one of two branches and T05 the other, the case ending at whichever comes last, so
    a T05 after T10 does not make T10 a step cases go on from. A step whose successors never
    come before it (Send Fine, then the notification) has none."""
    pairs = per_case.select("case_id", "activity", "at").join(
        per_case.select("case_id", pl.col("activity").alias("other"), pl.col("at").alias("then")),
        on="case_id").filter(pl.col("activity") != pl.col("other"))
    before, after = pl.col("then") < pl.col("at"), pl.col("then") > pl.col("at")
    parallel = pairs.group_by("activity", "other").agg(
        ((before.sum() >= 2) & (before.mean() >= CONCURRENT) & (after.sum() >= 2)
         & (after.mean() >= CONCURRENT)).alias("parallel"))
    return (pairs.filter(after).join(parallel, on=["activity", "other"])
            .filter(~pl.col("parallel")).group_by("case_id", "activity")
            .agg(pl.col("then").max().alias("on")))


def learned_ends(events: EventsLike, now: datetime | None = None) -> tuple[str, ...]:
    """The end activities the events up to ``now`` teach, most ends first."""
    return learn(events, now).chosen


def kept_from(process: str, learning: Learning, activities: tuple[str, ...], reason: str,
              version: int) -> KeptEnds:
    """A record to keep: ``activities`` as ``learning`` supports them."""
    return KeptEnds(process=process, activities=activities, learned_at=learning.at,
                    cases=learning.finished, shares=learning.shares(activities),
                    reason=reason, version=version)


def decide(process: str, kept: KeptEnds | None, learning: Learning) -> KeptEnds | None:
    """The record to keep now, or None to keep what is kept (or, without enough finished
    history, to keep nothing yet). Learned once; then changed only on strong evidence."""
    if kept is None:
        if not learning.enough or not learning.chosen:
            return None
        return kept_from(process, learning, learning.chosen,
                         f"learned from {learning.finished} finished cases", 1)
    if not learning.enough:
        return None
    reasons, activities = [], list(kept.activities)
    for evidence in learning.evidence:
        share = evidence.ends / learning.finished
        large = evidence.ends >= CHANGE_CASES and share >= CHANGE_SHARE
        always = evidence.ends >= CHANGE_ALWAYS and evidence.terminal >= ALWAYS_TERMINAL
        if (evidence.activity not in kept.activities and evidence.qualifies(learning.finished)
                and (large or always)):
            activities.append(evidence.activity)
            reasons.append(f"{evidence.activity} added: it ends {evidence.ends} of "
                           f"{learning.finished} finished cases ({share:.0%}), is last in "
                           f"{evidence.terminal:.0%} of those with it, and {evidence.stay:.0%} "
                           "of the cases resting there stayed ended")
    for activity in kept.activities:
        now_seen = learning.of(activity)
        if now_seen is not None and now_seen.resumed >= CHANGE_CASES and now_seen.stay < DROP_STAY:
            activities.remove(activity)
            reasons.append(f"{activity} removed: {now_seen.resumed} cases resting there went "
                           f"on, {now_seen.ends} stayed ended")
    if not reasons:
        return None
    return kept_from(process, learning, tuple(activities), "; ".join(reasons), kept.version + 1)
