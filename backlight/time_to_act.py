"""Time to act from the store (alerts/time_to_act.py on the stored alert history), counted on
each process's working calendar, for the web pages, ``GET /api/time-to-act`` and ``/metrics``.

On ``/metrics`` (read at each scrape, as the store's other figures), per process:
``backlight_alert_time_to_acknowledge_business_hours``, ``..._time_to_resolve_...`` and
``..._time_to_confirm_...`` (gauges with ``quantile`` "0.5" and "0.9", a series only once
something was measured), ``backlight_alert_episodes``, ``backlight_alert_episodes_recurred``
and ``backlight_alert_episodes_unacknowledged``. Label values are escaped by the exposition
format's writer (prometheus_client: backslash, double quote and line feed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.calendar import WorkCalendar
from alerts.lifecycle import with_acks_and_silences
from alerts.time_to_act import Hours, Report, episodes, report
from backlight.config import Settings
from schemas.errors import BacklightError
from storage import AlertState

log = structlog.stdlib.get_logger("backlight.metrics")


def calendar_of(settings: Settings) -> Callable[[str], WorkCalendar]:
    """Each process's working calendar: its own, else ``[alerts.calendar]``."""
    own = {p.name: p.calendar for p in settings.processes if p.calendar is not None}
    default = settings.alerts.calendar.calendar()
    made = {name: c.calendar() for name, c in own.items()}
    return lambda process: made.get(process, default)


def business_hours(settings: Settings) -> Hours:
    """Business hours between two moments on a process's calendar."""
    calendar = calendar_of(settings)

    def hours(process: str, start: datetime, end: datetime) -> float:
        return calendar(process).between(start, end) / 3600.0
    return hours


def measure(state: AlertState, hours: Hours, process: str | None = None) -> Report:
    """Time to act over the whole stored history (of one process, or all)."""
    acks = state.acknowledgements()
    current = {key: with_acks_and_silences(a, acks, ()) for key, a in state.alerts().items()}
    changes = [c for c in state.changes() if process is None or c.alert.process == process]
    return report(episodes(changes, current), hours)


_SPANS = (("acknowledge", "Business hours from firing to acknowledged"),
          ("resolve", "Business hours from firing to resolved (or accepted as normal)"),
          ("confirm", "Business hours from firing to confirmed resolved"))

_COUNTS = (("", "Alert episodes that fired, per process", "episodes"),
           ("_recurred", "Alert episodes that came back after resolving, per process", "recurred"),
           ("_unacknowledged", "Alert episodes never acknowledged (open or closed), per process",
            "never_acknowledged"))


class TimeToActCollector(Collector):
    """The time-to-act gauges per process, computed from the alert state at each scrape."""

    def __init__(self, state: AlertState, hours: Hours) -> None:
        self.state = state
        self.hours = hours
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            try:
                found = measure(self.state, self.hours)
            except (BacklightError, OSError) as exc:  # the store's own gauge says it is down
                log.warning("metrics: time to act cannot be read", error=str(exc))
                return
        for name, text in _SPANS:
            family = GaugeMetricFamily(f"backlight_alert_time_to_{name}_business_hours",
                                       f"{text}, median and 90th percentile, per process",
                                       labels=["process", "quantile"])
            for process, figures in found.processes.items():
                spread = getattr(figures, name)
                for q, value in (("0.5", spread.median), ("0.9", spread.p90)):
                    if value is not None:
                        family.add_metric([process, q], value)
            yield family
        for suffix, text, attribute in _COUNTS:
            counts = GaugeMetricFamily(f"backlight_alert_episodes{suffix}", text,
                                       labels=["process"])
            for process, figures in found.processes.items():
                counts.add_metric([process], getattr(figures, attribute))
            yield counts
