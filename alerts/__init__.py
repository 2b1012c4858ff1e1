"""Alerts: pure rules over a process's events, an Alertmanager-style lifecycle, and delivery to
chat from a persisted outbox.

Owns what is watched and who is told: the process definitions (owner, calendar, SLA, review),
the rules and their thresholds, the lifecycle (pending, firing, resolved; acknowledgements,
silences, repeats, escalation, inhibition), routing to channels and the channels' payloads,
and delivery. I/O lives at the edge: the alert state and the outbox are the storage package's
(storage/alert_state.py, storage/outbox.py), ``alerts.delivery`` sends (HTTP, Kafka).

Above mining, below the shell: it imports ``schemas``, ``storage`` and ``mining``, and must
never import ingest or the ``backlight`` shell (the shell runs it, on a schedule or as a
subscriber).

The public surface is re-exported here; the modules behind it are free to change. Each name
loads its module on first use (``schemas.lazy``), so that importing one part
(``alerts.calendar`` for the config's validation) does not load the others (httpx and
kafka-python for delivery, the rules and through them the mining core).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.lazy import lazy_exports

if TYPE_CHECKING:
    from alerts.calendar import CalendarSettings, WorkCalendar
    from alerts.channels import ChannelSettings, build_payload
    from alerts.context import Rule, RuleContext, RuleFunction
    from alerts.delivery import DeliveryReport, HttpxTransport, Transport, deliver
    from alerts.duration import Duration, parse_duration
    from alerts.errors import AlertConfigError, AlertError, AlertStateError, DeliveryError
    from alerts.evaluate import run_rules
    from alerts.lifecycle import Evaluation, LifecyclePolicy, advance
    from alerts.registry import ProcessDefinition, build_definition, learn_end_activities
    from alerts.routing import RouteSettings, route
    from alerts.rules import RULES
    from alerts.thresholds import RuleSettings

_HOMES: dict[str, tuple[str, ...]] = {
    "alerts.calendar": ("CalendarSettings", "WorkCalendar"),
    "alerts.channels": ("ChannelSettings", "build_payload"),
    "alerts.context": ("Rule", "RuleContext", "RuleFunction"),
    "alerts.delivery": ("DeliveryReport", "HttpxTransport", "Transport", "deliver"),
    "alerts.duration": ("Duration", "parse_duration"),
    "alerts.errors": ("AlertConfigError", "AlertError", "AlertStateError", "DeliveryError"),
    "alerts.evaluate": ("run_rules",),
    "alerts.lifecycle": ("Evaluation", "LifecyclePolicy", "advance"),
    "alerts.registry": ("ProcessDefinition", "build_definition", "learn_end_activities"),
    "alerts.routing": ("RouteSettings", "route"),
    "alerts.rules": ("RULES",),
    "alerts.thresholds": ("RuleSettings",),
}

__all__ = [
    "RULES", "AlertConfigError", "AlertError", "AlertStateError",
    "CalendarSettings", "ChannelSettings", "DeliveryError", "DeliveryReport", "Duration",
    "Evaluation", "HttpxTransport", "LifecyclePolicy",
    "ProcessDefinition", "RouteSettings", "Rule", "RuleContext", "RuleFunction", "RuleSettings",
    "Transport", "WorkCalendar", "advance", "build_definition",
    "build_payload", "deliver", "learn_end_activities", "parse_duration",
    "route", "run_rules",
]

lazy_exports(__name__, _HOMES)
