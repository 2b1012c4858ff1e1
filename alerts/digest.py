"""The weekly digest's content for one escalation route: what management follows up. Pure:
the route, the week, the stored alerts and the week's changes in; a ``Digest`` out.

Sections (each an escalation route's alerts only: its process and rule globs, its minimum
severity):

- **fired**: alerts that started firing in the week (their first FIRING in it);
- **confirmed**: alerts confirmed resolved in the week (CONFIRMED);
- **open, unowned or overdue**: alerts firing at the end of the week that nobody acknowledged
  or owns (no acknowledgement, no fix owner); overdue when firing longer than
  ``escalate_after``;
- **recurred**: alerts that came back in the week (RECURRED);
- **stale and ownerless processes**: the governance rules' open alerts (``stale_review``,
  ``no_owner``), which are kept out of the other sections;
- **worst movers**: the alerts open at the end of the week or fired in it, ranked by customer
  impact = cases affected x extra business days (``impact``), the largest first.

**Impact per rule**, from the alert's evidence:

- ``bottleneck``, ``throughput``, ``handoff``: the recent window's cases
  (``recent.cases``) x the rise of the median (``increase_days``: recent minus baseline
  median, business days);
- ``stuck``: the stuck cases (``count``) x how far the listed cases are past normal on average
  (``idle_days`` minus ``normal_p90_days``, or minus ``longest_wait_p999_days`` for abandoned
  cases);
- ``rework``: the cases hit beyond the baseline's share (``recent_cases_hit`` minus
  ``baseline_share`` x ``recent.cases``) x 1 business day: the evidence carries no duration, so
  each extra round of rework is counted as one business day (an assumption the digest states);
- other rules (conformance, governance, no events) carry no cases: no impact, not ranked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts.digest_schedule import Week
from alerts.routing import RouteSettings
from schemas.alerts import Alert, AlertChange, Change, JsonValue, Status

GOVERNANCE = ("stale_review", "no_owner")
DRIFT_RULES = ("bottleneck", "throughput", "handoff")
REWORK_DAYS = 1.0
"""Business days one extra round of rework is counted as (``rework`` evidence has no duration)."""
MAX_MOVERS = 10


@dataclass(frozen=True)
class Impact:
    """Customer impact: cases affected x extra business days each."""

    cases: float
    days: float

    @property
    def score(self) -> float:
        return self.cases * self.days


@dataclass(frozen=True)
class Item:
    """One alert in a digest section (raw, unescaped text)."""

    key: str
    process: str
    rule: str
    severity: str
    summary: str
    owner: str | None
    at: datetime | None
    """When it happened (fired, confirmed, recurred), or when it fired for open ones."""
    overdue: bool = False
    impact: Impact | None = None

    def to_json(self) -> dict[str, JsonValue]:
        return {"key": self.key, "process": self.process, "rule": self.rule,
                "severity": self.severity, "summary": self.summary, "owner": self.owner,
                "at": self.at.isoformat() if self.at else None, "overdue": self.overdue,
                "impact": None if self.impact is None else {
                    "cases": round(self.impact.cases, 2), "extra_days": round(self.impact.days, 2),
                    "score": round(self.impact.score, 2)}}


SECTIONS = (("fired", "Fired this week"), ("confirmed", "Confirmed resolved"),
            ("open", "Open, unowned or overdue"), ("recurred", "Came back (recurred)"),
            ("governance", "Stale and ownerless processes"),
            ("movers", "Worst movers by customer impact (cases x extra business days)"))


@dataclass(frozen=True)
class Digest:
    """One route's digest of one week."""

    route: str
    week: Week
    fired: tuple[Item, ...]
    confirmed: tuple[Item, ...]
    open: tuple[Item, ...]
    recurred: tuple[Item, ...]
    governance: tuple[Item, ...]
    movers: tuple[Item, ...]

    def section(self, name: str) -> tuple[Item, ...]:
        items: tuple[Item, ...] = getattr(self, name)
        return items

    def to_json(self) -> dict[str, JsonValue]:
        """The digest as data (the generic webhook's and the CloudEvent's body)."""
        return {"route": self.route, "week": {"from": self.week.start.isoformat(),
                                              "to": self.week.end.isoformat()},
                **{name: [i.to_json() for i in self.section(name)] for name, _ in SECTIONS}}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _cases(evidence: Mapping[str, Any]) -> float | None:
    recent = evidence.get("recent")
    return _number(recent.get("cases")) if isinstance(recent, Mapping) else None


def impact(alert: Alert) -> Impact | None:
    """The alert's customer impact from its evidence (see the module docstring), or None."""
    ev = alert.evidence
    if alert.rule in DRIFT_RULES:
        cases, rise = _cases(ev), _number(ev.get("increase_days"))
        return Impact(cases, max(0.0, rise)) if cases is not None and rise is not None else None
    if alert.rule == "stuck":
        count = _number(ev.get("count"))
        normal = _number(ev.get("normal_p90_days", ev.get("longest_wait_p999_days")))
        listed = [_number(c.get("idle_days")) for c in ev.get("cases", ())
                  if isinstance(c, Mapping)]
        idle = [d for d in listed if d is not None]
        if count is None or normal is None or not idle:
            return None
        return Impact(count, max(0.0, sum(idle) / len(idle) - normal))
    if alert.rule == "rework":
        hit, share, cases = (_number(ev.get("recent_cases_hit")),
                             _number(ev.get("baseline_share")), _cases(ev))
        if hit is None or share is None or cases is None:
            return None
        return Impact(max(0.0, hit - share * cases), REWORK_DAYS)
    return None


def _item(alert: Alert, at: datetime | None, overdue: bool = False) -> Item:
    found = impact(alert)
    return Item(alert.key, alert.process, alert.rule, alert.severity.value, alert.summary,
                alert.fix_owner or alert.acknowledged_by or alert.owner, at, overdue,
                found if found is not None and found.score > 0 else None)


def covers(route: RouteSettings, alert: Alert) -> bool:
    """Whether the route's globs and minimum severity take this alert."""
    return route.matches(AlertChange(Change.FIRING, alert, alert.last_seen))


def _firsts(changes: Iterable[AlertChange], kind: Change) -> list[AlertChange]:
    seen: dict[str, AlertChange] = {}
    for change in changes:
        if change.change is kind and change.alert.key not in seen:
            seen[change.alert.key] = change
    return list(seen.values())


def build(route: RouteSettings, name: str, week: Week, alerts: Mapping[str, Alert],
          changes: Sequence[AlertChange], escalate_after: timedelta | None) -> Digest:
    """The digest of ``week`` for one route: ``alerts`` as stored at the end of the week (with
    acknowledgements applied), ``changes`` those recorded in the week, oldest first."""
    mine = [c for c in changes if covers(route, c.alert) and week.start <= c.at < week.end]
    current = {k: a for k, a in alerts.items() if covers(route, a)}

    def latest(change: AlertChange) -> Alert:
        return current.get(change.alert.key, change.alert)

    def listed(kind: Change, governance: bool = False) -> list[Item]:
        return [_item(latest(c), c.at) for c in _firsts(mine, kind)
                if (c.alert.rule in GOVERNANCE) == governance]

    open_now = [a for a in current.values() if a.status is Status.FIRING]
    unowned = []
    for a in sorted(open_now, key=lambda a: (a.fired_at or a.first_seen, a.key)):
        if a.rule in GOVERNANCE or a.acknowledged or a.fix_owner:
            continue
        overdue = (escalate_after is not None and a.fired_at is not None
                   and week.end - a.fired_at >= escalate_after)
        unowned.append(_item(a, a.fired_at, overdue))
    governance = [_item(a, a.fired_at) for a in sorted(open_now, key=lambda a: a.key)
                  if a.rule in GOVERNANCE]
    fired = listed(Change.FIRING)
    candidates = {i.key: i for i in [*fired, *(_item(a, a.fired_at) for a in open_now)]}
    movers = sorted((i for i in candidates.values() if i.impact is not None),
                    key=lambda i: (-(i.impact.score if i.impact else 0.0), i.key))
    return Digest(name, week, tuple(fired), tuple(listed(Change.CONFIRMED)), tuple(unowned),
                  tuple(listed(Change.RECURRED)), tuple(governance), tuple(movers[:MAX_MOVERS]))
