"""Routing: which channels hear of which alert changes, grouped into one message per owner.

Routes are tried in order; a route matches a change when its ``process`` and ``rule`` globs
match and the alert is at least ``min_severity``; the first match stops the search unless the
route says ``continue = true``. Escalation routes (``escalation = true``) are a second list
searched the same way, for ESCALATED changes, for the resolution of an alert that had been
escalated, and for every CONFIRMED resolution (management follows up on what was fixed: the
closed loop). With no routes at all, every channel hears every change.
The changes one channel hears at one evaluation are grouped into one ``Notification`` per
(process, owner); a Kafka channel gets one notification per change (one CloudEvent each).
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from alerts.channels import ChannelSettings
from alerts.errors import AlertConfigError
from schemas.alerts import AlertChange, Change, Notification, Severity


class RouteSettings(BaseModel):
    """One ``[[alerts.routes]]`` entry."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    channels: tuple[str, ...] = Field(min_length=1)
    process: str = "*"
    """A shell glob on the process name."""
    rule: str = "*"
    """A shell glob on the rule name."""
    min_severity: Severity = Severity.INFO
    escalation: bool = False
    """An escalation route: hears escalations, the resolution of escalated alerts and confirmed
    resolutions only."""
    continue_: bool = Field(True, alias="continue")
    """Keep looking for further matching routes after this one matched."""

    def matches(self, change: AlertChange) -> bool:
        """Whether this route takes this change (process, rule, severity)."""
        alert = change.alert
        return (fnmatch.fnmatchcase(alert.process, self.process)
                and fnmatch.fnmatchcase(alert.rule, self.rule)
                and alert.severity.rank >= self.min_severity.rank)


def check_routes(routes: Sequence[RouteSettings], channels: Mapping[str, ChannelSettings]) -> None:
    """AlertConfigError naming the first route that names a channel that does not exist."""
    for i, route in enumerate(routes):
        for name in route.channels:
            if name not in channels:
                raise AlertConfigError(f"routes[{i}].channels: no channel named {name!r}")


def _escalates(change: AlertChange) -> bool:
    return change.change in (Change.ESCALATED, Change.CONFIRMED) or (
        change.change in (Change.RESOLVED, Change.ACCEPTED) and change.alert.escalated_at is not None)


def _search(change: AlertChange, routes: Sequence[RouteSettings]) -> list[str]:
    found: list[str] = []
    for route in routes:
        if route.matches(change):
            found.extend(route.channels)
            if not route.continue_:
                break
    return found


def targets(change: AlertChange, routes: Sequence[RouteSettings],
            channels: Mapping[str, ChannelSettings]) -> list[str]:
    """The channel names one change goes to, in route order, each once."""
    if not routes:
        return list(channels)
    names = _search(change, [r for r in routes if not r.escalation])
    if _escalates(change):
        names += _search(change, [r for r in routes if r.escalation])
    return list(dict.fromkeys(names))


def notification_id(channel: str, changes: Sequence[AlertChange]) -> str:
    """Deterministic: sha256 of the channel and the sorted (key, change, transition) of the
    changes, so evaluations that overlap queue one transition's notification once (the
    outbox's unique id makes the second insert a no-op). A change without a transition (made
    by hand) counts its time instead."""
    parts = sorted((c.alert.key, c.change.value, c.transition or f"at {c.at.isoformat()}")
                   for c in changes)
    digest = hashlib.sha256(channel.encode())
    for key, change, which in parts:
        digest.update(b"\x00" + key.encode() + b"\x1f" + change.encode() + b"\x1f"
                      + which.encode())
    return digest.hexdigest()


def route(changes: Sequence[AlertChange], routes: Sequence[RouteSettings],
          channels: Mapping[str, ChannelSettings], now: datetime) -> list[Notification]:
    """The notifications for one evaluation's changes, in first-change order."""
    check_routes(routes, channels)
    groups: dict[tuple[str, str, str | None, int], list[AlertChange]] = {}
    for index, change in enumerate(changes):
        for name in targets(change, routes, channels):
            single = channels[name].type == "kafka"
            group = (name, change.alert.process, change.alert.owner, index if single else -1)
            groups.setdefault(group, []).append(change)
    return [Notification(id=notification_id(name, grouped), channel=name, process=process,
                         owner=owner, changes=tuple(grouped), created_at=now)
            for (name, process, owner, _), grouped in groups.items()]
