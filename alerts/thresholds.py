"""Rule thresholds: one frozen model per rule, defaults that stay quiet on a healthy process.

``[alerts.rules.<rule>]`` in the config sets them for every process and
``[processes.rules.<rule>]`` overrides them for one (``RuleSettings.merged``). An unknown rule
or key, or a bad value, fails config loading with the key named (exit 2).

The models live here, not beside their rules, so that validating the config does not load the
rules (and through them polars and the mining core). ``RuleSettings`` has one field per rule
declared in ``alerts.rules.RULES``, named as the rule and typed by its ``Rule.settings``;
``alerts.rules`` refuses to load when the two disagree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.duration import Duration, parse_duration
from schemas.alerts import Severity


class Thresholds(BaseModel):
    """What every rule has: whether it runs, and the severity of its findings."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True
    severity: Severity = Severity.WARNING


def _duration(value: str) -> str:
    parse_duration(value)  # raises AlertConfigError (a ValueError) naming the problem
    return value


class WaitDrift(Thresholds):
    """bottleneck: the wait before an activity (or on an edge) drifted up against baseline."""

    baseline: str = "60 days"
    """How far back from the recent window the baseline reaches."""
    recent: str = "10 business days"
    """The recent window compared against the baseline."""
    min_cases: int = Field(20, ge=3)
    """Completed waits needed in each window (and per segment) before anything is said."""
    min_ratio: float = Field(2.0, gt=1)
    """Practical size: recent median (and p90) at least this many times the baseline's..."""
    min_increase: str = "1 business day"
    """...and at least this much longer."""
    segments: tuple[str, ...] = ("region", "channel", "product")
    """Attributes whose values are checked one by one (a slowdown confined to one segment)."""
    max_segment_values: int = Field(12, ge=1)
    critical_ratio: float = Field(4.0, gt=1)
    clear_fraction: float = Field(0.8, gt=0, le=1)
    """Hysteresis: an open alert holds while its drift is at this fraction of the practical
    size (``min_ratio``'s excess over 1 and ``min_increase``); 1 means no hysteresis."""
    clear_alpha: float = Field(0.05, gt=0, lt=1)
    """...and backed by the two-sample test at this level (fires at 0.01)."""

    _durations = field_validator("baseline", "recent", "min_increase")(_duration)

    @property
    def min_increase_duration(self) -> Duration:
        return parse_duration(self.min_increase)


class Throughput(WaitDrift):
    """throughput: whole-case durations (p10-p90) degraded against baseline."""

    segments: tuple[str, ...] = ()


class Handoff(WaitDrift):
    """handoff: the wait between two teams grew against baseline."""

    segments: tuple[str, ...] = ()


class Rework(Thresholds):
    """rework: an activity's rework share, a newly appeared loop, repeated requests."""

    max_share: float = Field(0.3, gt=0, le=1)
    """A fixed cap: an activity redone in more than this share of recent cases is a finding of
    its own ("rework at A above the 30% cap"), whatever the baseline; it says no increase."""
    min_ratio: float = Field(2.0, gt=1)
    """...or its recent share at least this many times the baseline share..."""
    min_share_increase: float = Field(0.05, gt=0, le=1)
    """...and at least this much higher (absolute)."""
    min_cases: int = Field(20, ge=3)
    recent: str = "20 business days"
    baseline: str = "60 days"
    request_activities: tuple[str, ...] | None = None
    """Activities that ask the customer for something; asked twice in a case is an alert.
    None: activities whose name starts with Request / Ask."""
    min_repeat_requests: int = Field(5, ge=1)
    min_loop_cases: int = Field(5, ge=1)
    """Recent cases that must go round a loop the baseline did not have before it is said."""
    min_support_cases: int = Field(5, ge=1)
    """Minimum support: a finding's sentence counts the cases started since its "since"; at
    least this many of them must hit (and min_loop_cases / min_repeat_requests for those)..."""
    min_support_share: float = Field(0.02, ge=0, le=1)
    """...and at least this share of them."""
    clear_z: float = Field(2.0, gt=0, lt=3)
    """Hysteresis: a shift fires at z >= 3 and an open alert holds while z >= this."""
    clear_fraction: float = Field(0.8, gt=0, le=1)
    """Hysteresis on the share thresholds: an open alert holds while its share is above this
    fraction of what opened it (max_share, min_share_increase, min_ratio's excess over 1, the
    minimum support); 1 means no hysteresis."""

    _durations = field_validator("baseline", "recent")(_duration)


class Stuck(Thresholds):
    """stuck: open cases idle longer than the SLA, or far longer than normal at their step."""

    idle_factor: float = Field(5.0, gt=1)
    """T0, "far longer than normal": this times the p90 of the normal wait after the current
    step... (cases beyond T0 are listed once more of them are idle than ordinary waits explain,
    or one alone beyond the step's fitted extreme; see ``alerts.rules.stuck``)"""
    min_idle: str = "3 business days"
    """...and at least this long."""
    min_cases: int = Field(1, ge=1)
    max_listed: int = Field(50, ge=1)
    abandon_factor: float = Field(10.0, gt=1)
    """A case idle longer than this times the p99.9 of all the process's waits (or than
    ``abandon_after``, whichever is shorter) is far beyond anything the process does: it is
    reported once as abandoned, apart from the stuck ones ("abandoned" finding)."""
    abandon_after: str = "250 business days"

    _durations = field_validator("min_idle", "abandon_after")(_duration)


class StaleReview(Thresholds):
    """stale_review: last review older than the process's interval, or never reviewed."""


class NoOwner(Thresholds):
    """no_owner: a process without exactly one accountable owner."""


class Conformance(Thresholds):
    """conformance: fitness to the reference model below a threshold."""

    min_fitness: float = Field(0.8, gt=0, le=1)
    recent: str = "30 days"
    min_cases: int = Field(20, ge=1)

    _durations = field_validator("recent")(_duration)


class NoEvents(Thresholds):
    """no_events: a process whose events stopped arriving (inhibits the data-driven rules)."""

    quiet_for: str = "2 business days"
    """At least this long without events..."""
    gap_factor: float = Field(10.0, gt=1)
    """...and this many times the process's usual longest gap between events."""
    severity: Severity = Severity.CRITICAL

    _durations = field_validator("quiet_for")(_duration)


class RuleSettings(BaseModel):
    """Thresholds of every rule; a rule named here that does not exist is a config error."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bottleneck: WaitDrift = WaitDrift()
    throughput: Throughput = Throughput()
    handoff: Handoff = Handoff()
    rework: Rework = Rework()
    stuck: Stuck = Stuck()
    stale_review: StaleReview = StaleReview()
    no_owner: NoOwner = NoOwner()
    conformance: Conformance = Conformance()
    no_events: NoEvents = NoEvents()

    def merged(self, overrides: dict[str, dict[str, Any]]) -> RuleSettings:
        """These settings with one process's overrides (``[processes.rules.<rule>]``) on top."""
        data = self.model_dump()
        for rule, values in overrides.items():
            data.setdefault(rule, {}).update(values)
        return RuleSettings.model_validate(data)

