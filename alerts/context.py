"""What every rule gets and how a rule is declared.

A rule is a function ``RuleFunction = Callable[[RuleContext], list[Finding]]`` over one process,
its events and "now", declared once as a ``Rule``: its name (the ``[alerts.rules.<name>]`` key
and every finding's ``rule``), its thresholds model, its function and its lifecycle policy
(whether its findings inhibit a process's other alerts, whether its own can be inhibited).
``alerts.rules.RULES`` lists the declarations in evaluation order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Generic, TypeVar

from alerts.registry import ProcessDefinition
from alerts.thresholds import RuleSettings, Thresholds
from mining.frame import Events
from schemas.alerts import Finding, alert_key

if TYPE_CHECKING:
    from alerts.facts import Facts


@dataclass(frozen=True)
class BaselineAnchor:
    """What one alert key's baseline is pinned to (``alerts.anchors``), in days.

    Frozen (``start`` None): an episode is open; the key is compared with the baseline as it
    was before ``until``, its onset day, and is reported while its recent figure is not back
    within it. Accepted (``start`` set): the owner accepted the level of the episode that began
    on ``start`` as normal on ``until``; the data from ``start`` up to ``until`` is the key's
    baseline until the rule's sliding baseline has moved past ``until``."""

    until: date
    start: date | None = None

    @property
    def accepted(self) -> bool:
        return self.start is not None


@dataclass(frozen=True)
class Scope:
    """The alert keys one run of a rule must judge (``alerts.anchors.anchored``): an anchored
    run judges only its anchor's keys, so a rule skips every other subject's statistics; None,
    every subject (the run without an anchor). Asking is conservative: a subject whose name is
    the start of a judged one's may be judged needlessly, never skipped wrongly."""

    rule: str
    process: str
    keys: frozenset[str] | None = None

    def subject(self, subject: str) -> bool:
        """Whether any judged key is about ``subject`` (process-wide or in a segment)."""
        if self.keys is None:
            return True
        base = alert_key(self.rule, self.process, subject)
        return any(key == base or key.startswith(f"{base}/") for key in self.keys)

    def segmented(self, subject: str) -> bool:
        """Whether any judged key is about ``subject`` in a segment (its segments must be
        judged)."""
        if self.keys is None:
            return True
        base = f"{alert_key(self.rule, self.process, subject)}/"
        return any(key.startswith(base) for key in self.keys)


@dataclass(frozen=True)
class RuleContext:
    process: ProcessDefinition
    events: Events
    """The process's events (prepared: checked and ordered), possibly none."""
    now: datetime
    """Aware; the wall clock, or ``--now`` for replayed or simulated history."""
    anchors: Mapping[str, BaselineAnchor] = field(default_factory=dict)
    """Pinned baselines by alert key (the open and accepted episodes, ``alerts.anchors``):
    each rule with a baseline honours them (``alerts.anchors.anchored``)."""

    @cached_property
    def facts(self) -> Facts:
        """Derived tables in business time (case table, waits per step), computed once."""
        from alerts.facts import Facts

        rules = self.process.rules
        keys = (*rules.bottleneck.segments, *rules.throughput.segments, *rules.handoff.segments)
        return Facts.build(self.events, self.process.calendar, self.now,
                           end_activities=self.process.end_activities, segment_keys=keys)


RuleFunction = Callable[[RuleContext], list[Finding]]
"""The one signature of a rule's function."""

S = TypeVar("S", bound=Thresholds)


@dataclass(frozen=True)
class Rule(Generic[S]):
    """One alert rule, declared once, next to its function."""

    name: str
    """The rule's key: ``[alerts.rules.<name>]``, ``Finding.rule``, the alert keys."""
    settings: type[S]
    """Its thresholds model: the type of ``RuleSettings.<name>``."""
    run: RuleFunction
    inhibits: bool = False
    """While a finding of this rule is present (pending or firing) for a process, the
    process's inhibitable alerts freeze: the rule says the data behind them stopped."""
    inhibitable: bool = True
    """Frozen while an inhibiting finding is present; False for a rule whose findings do not
    come from the events' flow (governance) or that inhibits itself."""
    baseline: bool = False
    """It compares with a baseline (``alerts.anchors``): an open episode freezes it, and the
    owner may accept a new level as normal. A rule without one (stuck cases, no events,
    governance) has no level to accept: its alerts are fixed or silenced."""

    def settings_in(self, rules: RuleSettings) -> S:
        """This rule's thresholds in a process's (or the config's) rule settings."""
        settings = getattr(rules, self.name)
        assert isinstance(settings, self.settings), f"RuleSettings.{self.name} is not {self.settings}"
        return settings
