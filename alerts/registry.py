"""The process registry: who owns each process, when it was reviewed, its SLA and calendar.

SKELETON: the registry helper completes it. ``ProcessDefinition`` is the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from alerts.calendar import WorkCalendar
from alerts.duration import Duration
from alerts.thresholds import RuleSettings


@dataclass(frozen=True)
class ProcessDefinition:
    """One process as the rules see it: the config's ``[[processes]]`` entry plus its reviews."""

    name: str
    owners: tuple[str, ...] = ()
    """Accountable owners named in the config; anything but exactly one is an alert."""
    team: str | None = None
    last_reviewed: date | None = None
    """The latest of the config's date and the recorded reviews."""
    reviewed_by: str | None = None
    review_interval_months: int = 18
    sla: Duration | None = None
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    reference_model: str | None = None
    end_activities: tuple[str, ...] = ()
    end_activities_learned: bool = False
    """True when the config named none and they were learned from the data."""
    rules: RuleSettings = field(default_factory=RuleSettings)
    configured: bool = True
    """False for a process seen in the store but absent from the config."""

    @property
    def owner(self) -> str | None:
        """The one accountable owner, or None when there is not exactly one."""
        return self.owners[0] if len(self.owners) == 1 else None
