"""Benchmark (on demand: python3 -m pytest -m bench -s tests/test_bench_real_logs.py): the alert
rules on the public real logs as a new user meets them (issue 17, "What must be shown").

BPIC 2012 as "loans", receipt, helpdesk and the road-traffic fines sample as "fines" are
replayed (`backlight replay`) through the real local Kafka broker and stored by `backlight
consume --exit-when-idle` in one SQLite store. The config names an owner and a recent review
(last_reviewed = the day of the log's last event) for each process, no end activities and no
SLA, and one chat channel (Slack, never delivered: the outbox counts what would be sent). Then
alert rounds with state kept (``backlight.alerting.evaluate``, what `alerts evaluate --now T`
runs, in process: the state goes to the same store) every 7 days (5 business days) at 18:00
Amsterdam from 8 weeks after each log's first event to its last event; REAL_LOGS_ROUNDS
caps the rounds per log (default: none).

Printed per process: alerts opened per week, distinct keys by rule, flapping keys, chat messages
(notifications) per week, the share of stuck listings that are finished cases, every summary
that fired; then each target beside its figure (tests/bench_targets.py), failing when missed:

- no finished case listed as stuck. A listed case is *finished* when it has no event after the
  round in the whole log and its last activity is one of the end activities ``alerts.ends.learn``
  learns from the whole log (the stricter "no later event at all" is printed beside it);
- strict JSON: every stored alert state, history row and outbox payload, and `alerts list
  --format json --all`, parse with a parser rejecting NaN and Infinity;
- at most one chat message per process and week on average; at most 10% of keys flapping;
- the three real changes found, the first "since" of the alert firing from the change on
  within 5 business days of it. The change is dated from the data alone, over the whole log, as
  the issue measured it (``shift_point``): where the median of log(1 + hours) of the issue's n
  waits after minus that of its n waits before is largest (the share of repeating cases, for a
  repeat); a wait is dated by the event it follows (when the waiting began), a case's repeat by
  the case's first event.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time as time_module
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from bench_targets import Targets
from conftest import backlight, shared_file, write_config
from evidence_support import contradictions, documents
from real_logs_support import LOGS, real

from alerts.calendar import WorkCalendar
from alerts.ends import learn
from backlight import alerting
from backlight.config import load as load_settings
from mining.frame import prepare
from schemas.alerts import Alert, Change, Status

pytestmark = [pytest.mark.bench, pytest.mark.kafka]
AMS = ZoneInfo("Europe/Amsterdam")
CAL = WorkCalendar()
MAX_ROUNDS = int(os.environ.get("REAL_LOGS_ROUNDS", "0")) or None
CHANGES = (  # (process, rule, subject contains, what, cases before, cases after: the n)
    ("receipt", "bottleneck", "wait before T06 Determine necessity of stop advice", "wait", 168, 31),
    ("helpdesk", "rework", "Assign seriousness", "repeat", 249, 30),
    ("helpdesk", "bottleneck", "wait before Resolve ticket", "wait", 332, 148),
)
SINCE_DAYS = 5.0


def strict(text: str | bytes) -> Any:
    """JSON as a strict parser reads it: NaN, Infinity and -Infinity are errors."""
    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def config_text(logs: dict[str, pl.DataFrame]) -> str:
    """Owners, a recent review, no end activities, no SLA; one chat channel."""
    out = ""
    for process, df in logs.items():
        last: datetime = df["timestamp"].max()  # type: ignore[assignment]
        out += (f'[[processes]]\nname = "{process}"\nowner = "{process}-lead@example.com"\n'
                f"last_reviewed = {last.date().isoformat()}\n\n")
    return out + ('[[channels]]\ntype = "slack"\nname = "team-chat"\n'
                  'url = "http://127.0.0.1:9/never-delivered"\n\n')


def rounds(df: pl.DataFrame) -> list[datetime]:
    """Every 7 days at 18:00 Amsterdam from 8 weeks after the first event to the last one."""
    first: datetime = df["timestamp"].min()  # type: ignore[assignment]
    last: datetime = df["timestamp"].max()  # type: ignore[assignment]
    now = datetime.combine((first + timedelta(weeks=8)).astimezone(AMS).date(), time(18), AMS)
    out: list[datetime] = []
    while now <= last and (MAX_ROUNDS is None or len(out) < MAX_ROUNDS):
        out.append(now)
        now += timedelta(days=7)
    return out


@dataclass
class Replay:
    """What the rounds of one process produced."""

    process: str
    weeks: int = 0
    opened: int = 0
    messages: int = 0
    changes: int = 0
    keys: dict[str, str] = field(default_factory=dict)
    flapping: set[str] = field(default_factory=set)
    listings: int = 0
    finished: int = 0
    never_again: int = 0
    fired: list[str] = field(default_factory=list)
    seen: dict[str, list[tuple[datetime, Alert]]] = field(default_factory=lambda: defaultdict(list))


def case_ends(df: pl.DataFrame) -> dict[str, tuple[datetime, str]]:
    """Each case's last event: its time and activity."""
    last = df.sort("timestamp").group_by("case_id").agg(pl.col("timestamp").last(),
                                                       pl.col("activity").last())
    return {c: (t, a) for c, t, a in last.iter_rows()}


def replay(settings: Any, process: str, df: pl.DataFrame) -> Replay:
    """The alert rounds of one process, state kept in the store."""
    out = Replay(process)
    ends = case_ends(df)
    final_ends = set(learn(prepare(df)).chosen)
    for now in rounds(df):
        report = alerting.evaluate(settings, now, processes=[process])
        assert not report.failed, report.failed
        out.weeks += 1
        out.messages += len(report.notifications)
        out.changes += sum(len(n.changes) for n in report.notifications)
        for change in report.changes:
            if change.change == Change.FIRING:
                out.opened += 1
                out.fired.append(f"{now.date()} [{change.alert.rule}] {change.alert.summary} "
                                 f"(since {change.alert.since})")
        for alert in report.alerts:
            out.keys[alert.key] = alert.rule
            out.seen[alert.key].append((now, alert))
            if alert.flapping:
                out.flapping.add(alert.key)
            if alert.rule == "stuck" and alert.status == Status.FIRING:
                for case in alert.cases:
                    at, activity = ends[case]
                    out.listings += 1
                    later = at > now
                    out.never_again += not later
                    out.finished += (not later) and activity in final_ends
    return out


def shift_point(values: np.ndarray, before: int, after: int, mean: bool) -> tuple[int, float, float]:
    """Where the series (in time order) shifts up most, as the issue measures a change: the
    index k maximising the statistic of the ``after`` values from k minus that of the ``before``
    values up to k (the median, or the mean where ``mean``), over the whole series; and those
    two statistics. A change that comes and goes (receipt's wait before T06, up for a few weeks
    in March 2011) is found where it began, not where a single split of a year would put it."""
    stat = np.mean if mean else np.median
    ahead = np.array([stat(w) for w in np.lib.stride_tricks.sliding_window_view(values, after)])
    behind = np.array([stat(w) for w in np.lib.stride_tricks.sliding_window_view(values, before)])
    ks = np.arange(before, len(values) - after + 1)
    k = int(ks[int(np.argmax(ahead[ks] - behind[ks - before]))])
    return k, float(ahead[k]), float(behind[k - before])


def wait_change(df: pl.DataFrame, activity: str, before: int, after: int
                ) -> tuple[datetime, float, float]:
    """When the wait before ``activity`` went up (each wait dated by the event it follows, when
    the waiting began: a slowdown then errs by at most the old, short wait, where dating by its
    end lags by the new, long one), over the whole log, and its median in hours over the
    ``before`` waits before and the ``after`` waits from then."""
    waits = (df.sort("case_id", "timestamp")
             .with_columns(pl.col("timestamp").shift(1).over("case_id").alias("prev"))
             .filter((pl.col("activity") == activity) & pl.col("prev").is_not_null())
             .with_columns(((pl.col("timestamp") - pl.col("prev")).dt.total_seconds()
                            / 3600).alias("hours"))
             .sort("prev"))
    hours = waits["hours"].to_numpy()
    k, _, _ = shift_point(np.log1p(hours), before, after, mean=False)
    return (waits["prev"][k], float(np.median(hours[k - before:k])),
            float(np.median(hours[k:k + after])))


def repeat_change(df: pl.DataFrame, activity: str, before: int, after: int
                  ) -> tuple[datetime, float, float]:
    """When the share of cases doing ``activity`` more than once went up (each case dated by its
    first event), over the whole log, and the share among the ``before`` cases before and the
    ``after`` cases from then."""
    per_case = df.group_by("case_id").agg(pl.col("timestamp").min().alias("start"),
                                          (pl.col("activity") == activity).sum().alias("n")
                                          ).sort("start", "case_id")
    hit = (per_case["n"] >= 2).to_numpy().astype(float)
    k, share_after, share_before = shift_point(hit, before, after, mean=True)
    return per_case["start"][k], share_before, share_after


def business_days_apart(since: date, change: datetime) -> float:
    """Business days between an alert's since (its midnight) and a change, either way round."""
    a = datetime.combine(since, time(0), AMS)
    b = change.astimezone(AMS)
    return CAL.between(min(a, b), max(a, b)) / CAL.day_seconds


def stored_contradictions(db: Path) -> tuple[int, list[str]]:
    """Every stored alert (state and history) checked against its own evidence: how many
    alert documents, and what contradicts (each distinct one once)."""
    count, found = 0, {}
    with sqlite3.connect(db) as conn:
        for query in ("SELECT body FROM alert_states", "SELECT body FROM alert_history"):
            for (text,) in conn.execute(query):
                for alert in documents(json.loads(text)):
                    count += 1
                    for what in contradictions(alert):
                        found[f"{alert.get('key')}: {what}: {alert['summary'][:160]}"] = None
    return count, list(found)


def stored_json(db: Path) -> tuple[int, list[str]]:
    """Every stored alert state, history row and outbox payload parsed strictly: how many, and
    the errors."""
    count, errors = 0, []
    with sqlite3.connect(db) as conn:
        for table, query in (("alert_states", "SELECT body FROM alert_states"),
                             ("alert_history", "SELECT body FROM alert_history"),
                             ("outbox", "SELECT payload FROM outbox")):
            for (text,) in conn.execute(query):
                count += 1
                try:
                    strict(text)
                except ValueError as exc:
                    errors.append(f"{table}: {exc}")
    return count, errors


def test_real_logs_replayed_through_kafka_with_alert_rounds(
        tmp_path: Path, kafka_bootstrap: str, unique: str) -> None:
    """The issue's targets on the four public logs, replayed and evaluated weekly with state."""
    files = {p: shared_file(f) for p, f in LOGS.items()}
    logs = {p: prepare(real(p)).df for p in files}
    db = tmp_path / "store.db"
    topics = {p: f"real-{p}-{unique}" for p in LOGS}
    config = write_config(tmp_path / "backlight.toml", kafka_bootstrap, db,
                          [(t, p) for p, t in topics.items()], f"real-{unique}",
                          extra=config_text(logs))
    print()
    for process, path in files.items():
        backlight("replay", str(path), "--process", process, "--topic", topics[process],
                  "--config", str(config), timeout=1200)
    backlight("--log-level", "WARNING", "consume", "--config", str(config),
              "--exit-when-idle", "15", timeout=1800)
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT process, COUNT(*) FROM events GROUP BY process"))
    print("stored through Kafka: " + ", ".join(f"{p} {stored.get(p, 0):,} of {logs[p].height:,}"
                                               for p in LOGS))
    settings = load_settings(config)
    results = {}
    for process, df in logs.items():
        started = time_module.perf_counter()
        results[process] = replay(settings, process, df)
        print(f"{process}: {results[process].weeks} rounds in "
              f"{time_module.perf_counter() - started:.0f} s")

    targets, lines = Targets(), []
    for r in results.values():
        by_rule = Counter(r.keys.values())
        print(f"\n== {r.process}: {r.weeks} weekly rounds"
              f" ({rounds(logs[r.process])[0].date()} on)" if r.weeks else f"\n== {r.process}")
        print(f"  alerts opened: {r.opened} ({r.opened / max(r.weeks, 1):.2f} per week)")
        print(f"  distinct keys {len(r.keys)}: " + ", ".join(f"{k} {n}" for k, n in
                                                             sorted(by_rule.items())))
        print(f"  flapping keys: {len(r.flapping)} " + ", ".join(sorted(r.flapping)))
        print(f"  chat messages: {r.messages} ({r.messages / max(r.weeks, 1):.2f} per week), "
              f"carrying {r.changes} alert changes")
        print(f"  stuck listings: {r.listings}; finished (no later event, last activity a learned"
              f" end) {r.finished}; no later event at all {r.never_again}")
        print("  every alert that fired:")
        for line in r.fired:
            print(f"    {line}")
        lines.append(targets.at_most(f"{r.process}: finished cases listed as stuck", r.finished,
                                     0, 0, spec="d"))
        lines.append(targets.at_most(f"{r.process}: chat messages per week",
                                     r.messages / max(r.weeks, 1), 1.0, 1.0))
        lines.append(targets.at_most(f"{r.process}: share of keys flapping",
                                     len(r.flapping) / max(len(r.keys), 1), 0.10, 0.10))

    count, errors = stored_json(db)
    listed = backlight("--log-level", "WARNING", "alerts", "list", "--config", str(config),
                       "--format", "json", "--all")
    try:
        strict(listed.stdout)
    except ValueError as exc:
        errors.append(f"alerts list --format json: {exc}")
    for error in errors[:10]:
        print(f"  strict JSON: {error}")
    lines.append(targets.at_most(f"strict JSON: of {count} stored documents and `alerts list`, "
                                 "failing", len(errors), 0, 0, spec="d"))

    checked, contradicting = stored_contradictions(db)
    for line in contradicting[:20]:
        print(f"  contradicts its evidence: {line}")
    lines.append(targets.at_most(f"alerts contradicting their evidence (of {checked} stored alert "
                                 "documents, distinct)", len(contradicting), 0, 0, spec="d"))

    print("\nthe real changes, dated from the data (the issue's n before and after):")
    for process, rule, subject, kind, n_before, n_after in CHANGES:
        activity = subject.removeprefix("wait before ")
        if kind == "wait":
            at, before, after = wait_change(logs[process], activity, n_before, n_after)
            how = f"median {before:.2f} h (n={n_before}) -> {after:.2f} h (n={n_after})"
        else:
            at, before, after = repeat_change(logs[process], activity, n_before, n_after)
            how = (f"repeated in {before * n_before:.0f} of {n_before} -> "
                   f"{after * n_after:.0f} of {n_after} cases")
        found = sorted(((now, a) for alerts in results[process].seen.values() for now, a in alerts
                        if a.rule == rule and subject in a.subject and "cap" not in a.subject
                        and a.status == Status.FIRING), key=lambda seen: seen[0])
        sinces = sorted({a.since for _, a in found if a.since is not None})
        first = next((a for now, a in found if now >= at and a.since is not None), None)
        apart = float("inf") if first is None or first.since is None else \
            business_days_apart(first.since, at)
        said = ("never fired after it" if first is None else
                f"first since after it {first.since} ({apart:.1f} business days apart), "
                f"fired {first.fired_at.date() if first.fired_at else '?'}")
        print(f"  {process} {subject}: changed {at.date()} ({how}); {said}; every since: "
              + (", ".join(str(s) for s in sinces) or "never fired"))
        lines.append(targets.at_most(f"{process} {subject}: first since from the change",
                                     apart, SINCE_DAYS, SINCE_DAYS, " business days", ".1f"))
    print("\ntargets:")
    print("\n".join(lines))
    targets.check()
