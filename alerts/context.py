"""What every rule gets: one process, its events, and "now". Rules share one signature,
``Rule = Callable[[RuleContext], list[Finding]]``, and are chained by the evaluator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from alerts.registry import ProcessDefinition
from mining.frame import Events
from schemas.alerts import Finding

if TYPE_CHECKING:
    from alerts.facts import Facts


@dataclass(frozen=True)
class RuleContext:
    process: ProcessDefinition
    events: Events
    """The process's events (prepared: checked and ordered), possibly none."""
    now: datetime
    """Aware; the wall clock, or ``--now`` for replayed or simulated history."""

    @cached_property
    def facts(self) -> Facts:
        """Derived tables in business time (case table, waits per step), computed once."""
        from alerts.facts import Facts

        rules = self.process.rules
        keys = (*rules.bottleneck.segments, *rules.throughput.segments, *rules.handoff.segments)
        return Facts.build(self.events, self.process.calendar, self.now,
                           end_activities=self.process.end_activities, segment_keys=keys)


Rule = Callable[[RuleContext], list[Finding]]
