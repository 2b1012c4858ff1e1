"""The process registry: who owns each process, when it was reviewed, its SLA and calendar.

``build_definition`` turns one ``[[processes]]`` entry plus the reviews recorded in the store
into the ``ProcessDefinition`` the rules see: owners normalised, the latest review winning over
the config's ``last_reviewed``, the SLA parsed into a typed ``Duration``, and the end activities
learned from the events when the config names none (``learn_end_activities``, alerts/ends.py;
``alerts evaluate`` keeps what it learns in the store and passes it in as configured).
"""

from __future__ import annotations

import calendar as gregorian
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

import structlog

from alerts.calendar import CalendarSettings, WorkCalendar
from alerts.duration import Duration, parse_duration
from alerts.ends import learned_ends
from alerts.errors import AlertConfigError
from alerts.thresholds import RuleSettings
from mining.frame import EventsLike
from schemas.alerts import Review

log = structlog.stdlib.get_logger("backlight.alerts.registry")


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


def parse_sla(text: str | Duration) -> Duration:
    """An SLA as a typed duration (``"5 business days"``, ``"36 hours"``); a non-positive or
    unreadable one raises ``AlertConfigError`` saying what is wrong."""
    duration = text if isinstance(text, Duration) else parse_duration(text)
    if duration.amount <= 0:
        raise AlertConfigError(f"sla {str(text)!r}: an SLA must be positive")
    return duration


def add_months(day: date, months: int) -> date:
    """``day`` moved by whole calendar months, clamped to the month's last day
    (2025-08-31 + 6 months = 2026-02-28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = gregorian.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def months_between(start: date, end: date) -> int:
    """Whole calendar months from ``start`` to ``end`` (negative when end is earlier):
    2025-03-01 -> 2026-09-30 is 18, 2025-03-31 -> 2025-04-30 is 1."""
    if end < start:
        return -months_between(end, start)
    months = (end.year - start.year) * 12 + end.month - start.month
    if add_months(start, months) > end:
        months -= 1
    return months


def review_due(last_reviewed: date, interval_months: int) -> date:
    """The date the next review is due: the last review plus the interval in calendar months."""
    return add_months(last_reviewed, interval_months)


def effective_review(config_date: date | None, reviews: Sequence[Review], *,
                     config_by: str | None = None,
                     timezone: str | None = None) -> tuple[date | None, str | None]:
    """The last review that counts and who did it: the latest recorded review wins over the
    config's date unless the config's is later. A review's date is taken in ``timezone``
    (the process calendar's; UTC when None)."""
    latest = max(reviews, key=lambda review: review.at, default=None)
    if latest is None:
        return config_date, (config_by if config_date is not None else None)
    zone = ZoneInfo(timezone or "UTC")
    at = latest.at.astimezone(zone) if latest.at.tzinfo is not None else latest.at
    if config_date is None or at.date() >= config_date:
        return at.date(), latest.by
    return config_date, config_by


_OWNER_SEPARATORS = re.compile(r"\s*[,;]\s*")


def normalise_owners(owners: str | Sequence[str] | None) -> tuple[str, ...]:
    """Owners as a tuple of distinct names: ``"alice, bob"`` (or ``"alice; bob"``) names
    two; blanks are dropped; the same name twice (any case) counts once."""
    if owners is None:
        return ()
    names = _OWNER_SEPARATORS.split(owners) if isinstance(owners, str) else list(owners)
    seen: dict[str, str] = {}
    for name in names:
        clean = name.strip()
        if clean and clean.casefold() not in seen:
            seen[clean.casefold()] = clean
    return tuple(seen.values())


def learn_end_activities(events: EventsLike, *, now: datetime | None = None) -> tuple[str, ...]:
    """The activities where the finished cases of ``events`` (up to ``now``) end and stay ended,
    outcomes included, most ends first (``alerts.ends``)."""
    return learned_ends(events, now)


def build_definition(name: str, *, owners: str | Sequence[str] | None = (),
                     team: str | None = None, last_reviewed: date | None = None,
                     reviews: Sequence[Review] = (), review_interval_months: int = 18,
                     sla: str | Duration | None = None,
                     calendar: WorkCalendar | CalendarSettings | None = None,
                     reference_model: str | None = None,
                     end_activities: Sequence[str] | None = (),
                     rules: RuleSettings | None = None, events: EventsLike | None = None,
                     configured: bool = True, reviewed_by: str | None = None,
                     now: datetime | None = None) -> ProcessDefinition:
    """One process as the rules see it. ``last_reviewed``/``reviewed_by`` are the config's;
    the latest of ``reviews`` (those of this process) wins over them. Where no end activities
    are configured and ``events`` are given, they are learned (``end_activities_learned``)."""
    if review_interval_months < 1:
        raise AlertConfigError(f"review_interval_months {review_interval_months}: must be at "
                               "least 1")
    work = calendar.calendar() if isinstance(calendar, CalendarSettings) else calendar or WorkCalendar()
    own = [review for review in reviews if review.process == name]
    reviewed, by = effective_review(last_reviewed, own, config_by=reviewed_by, timezone=work.timezone)
    ends = tuple(dict.fromkeys(a for a in (end_activities or ()) if a))
    learned = False
    if not ends and events is not None:
        ends = learn_end_activities(events, now=now)
        learned = bool(ends)
        if learned:
            log.info("end activities learned", process=name, end_activities=",".join(ends))
    return ProcessDefinition(
        name=name, owners=normalise_owners(owners), team=team, last_reviewed=reviewed,
        reviewed_by=by, review_interval_months=review_interval_months,
        sla=parse_sla(sla) if sla is not None else None, calendar=work,
        reference_model=reference_model, end_activities=ends, end_activities_learned=learned,
        rules=rules if rules is not None else RuleSettings(), configured=configured)
