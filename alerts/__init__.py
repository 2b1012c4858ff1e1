"""Alerts: pure rules over a process's events, an Alertmanager-style lifecycle, and delivery to
chat from a persisted outbox.

The public surface is re-exported here; the modules behind it are free to change. I/O lives
at the edge: ``alerts.state`` and ``alerts.outbox`` (SQLite), ``alerts.delivery`` (HTTP, Kafka).
"""

from alerts.calendar import CalendarSettings, WorkCalendar
from alerts.channels import ChannelSettings, build_payload
from alerts.context import Rule, RuleContext
from alerts.delivery import DeliveryReport, HttpxTransport, KafkaTransport, Transport, deliver
from alerts.duration import Duration, parse_duration
from alerts.errors import AlertConfigError, AlertError, AlertStateError, DeliveryError
from alerts.evaluate import run_rules
from alerts.lifecycle import Evaluation, LifecyclePolicy, advance
from alerts.outbox import Outbox
from alerts.registry import ProcessDefinition, build_definition, learn_end_activities
from alerts.routing import RouteSettings, route
from alerts.rules import RULES
from alerts.state import AlertState, SQLiteAlertState, open_alert_state
from alerts.thresholds import RuleSettings

__all__ = [
    "RULES", "AlertConfigError", "AlertError", "AlertState", "AlertStateError",
    "CalendarSettings", "ChannelSettings", "DeliveryError", "DeliveryReport", "Duration",
    "Evaluation", "HttpxTransport", "KafkaTransport", "LifecyclePolicy", "Outbox",
    "ProcessDefinition", "RouteSettings", "Rule", "RuleContext", "RuleSettings",
    "SQLiteAlertState", "Transport", "WorkCalendar", "advance", "build_definition",
    "build_payload", "deliver", "learn_end_activities", "open_alert_state", "parse_duration",
    "route", "run_rules",
]
