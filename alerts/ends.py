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
  (an hour) after A: reaching A means the case is over, bar the bookkeeping that closes it
  (BPIC 2012: A_DECLINED 1.0, A_CANCELLED 1.0, W_Valideren aanvraag 0.90, while a step that
  stuck cases happen to stop at, but others go on from, has the share of those stopping);
- ``stay``: of the cases that rested at A longer than a long rest (the process's p99 gap), the
  share that never resumed: ``ends / (ends + resumed)`` (a step where cases wait long and then
  go on, like BPIC's W_Nabellen offertes, 0.55, is no end).

A is an end when ``terminal >= MIN_TERMINAL`` and ``stay >= MIN_STAY`` and it ends at least
``MIN_SHARE`` of the finished cases (two at least), or, rarer, when it is nearly always last
(``terminal >= ALWAYS_TERMINAL``) in at least two finished cases: a rare withdrawal is an end
all the same.

**Kept, changed on strong evidence.** What is learned from at least ``MIN_FINISHED`` finished
cases is kept (``KeptEnds`` in storage/end_activities.py) and reused every round; ``decide``
changes it only when a new activity qualifies and ends at least ``CHANGE_SHARE`` of the recent
finished cases (and ``CHANGE_CASES`` of them), or is nearly always last in at least
``CHANGE_ALWAYS`` of them (a path's own end, like receipt's T15), or when most cases resting at
a kept one resume (``CHANGE_CASES`` at least): each change says why. The config's
``end_activities`` override all of it.
"""

from __future__ import annotations

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
CHANGE_SHARE: Final = 0.05
CHANGE_CASES: Final = 30
CHANGE_ALWAYS: Final = 10
DROP_STAY: Final = 0.5


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

    def qualifies(self, finished: int) -> bool:
        """An end: its cases are over when they reach it, and stay over."""
        if self.stay < MIN_STAY or self.ends < 2:
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
    def enough(self) -> bool:
        """Enough finished cases to keep what was learned."""
        return self.finished >= MIN_FINISHED

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
        (pl.col("last").first() - pl.col("timestamp").max()).dt.total_seconds().alias("after"))
    stats = (per_case.group_by("activity").agg(
        (pl.col("after") == 0).sum().alias("ends"), pl.len().alias("cases"),
        (pl.col("after") <= TAIL_S).mean().alias("terminal"))
        .join(resumed, on="activity", how="left")
        .filter((pl.col("ends") > 0) | (pl.col("resumed") > 0))
        .sort(["ends", "activity"], descending=[True, False]))
    evidence = tuple(EndEvidence(a, int(e), int(c), float(t), int(r or 0))
                     for a, e, c, t, r in stats.select(
                         "activity", "ends", "cases", "terminal", "resumed").iter_rows())
    return Learning(at, finished, quiet, evidence)


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
