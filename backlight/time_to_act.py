"""Time to act from the store (alerts/time_to_act.py on the stored alert history), counted on
each process's working calendar, for the web pages, ``GET /api/time-to-act`` and ``/metrics``.

On ``/metrics`` (read at each scrape, as the store's other figures), per process:
``backlight_alert_time_to_acknowledge_business_hours``, ``..._time_to_resolve_...`` and
``..._time_to_confirm_...`` (gauges with ``quantile`` "0.5" and "0.9", a series only once
something was measured), ``backlight_alert_episodes``, ``backlight_alert_episodes_recurred``
and ``backlight_alert_episodes_unacknowledged``. Label values are escaped by the exposition
format's writer (prometheus_client: backslash, double quote and line feed).

**Bounded and cached.** The figures cover the episodes that fired in the last
``[alerts] time_to_act_window`` (90 days by default; ``?days=`` on the API), read from the
history with ``changes(since=now - window)`` (an index on ``alert_history.at_us``).
``TimeToActCache`` keeps each computed report and recomputes it only when the history's latest
change (``SELECT MAX(seq)``) moved or the report is older than its time to live (60 s): a page
view or a scrape in between costs that one small query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.calendar import WorkCalendar
from alerts.duration import parse_duration
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


def window_of(settings: Settings) -> timedelta:
    """``[alerts] time_to_act_window`` as a duration (validated as wall time by the config)."""
    return timedelta(seconds=parse_duration(settings.alerts.time_to_act_window).wall_seconds)


def measure(state: AlertState, hours: Hours, process: str | None = None,
            window: timedelta | None = None, now: datetime | None = None) -> Report:
    """Time to act over the episodes (of one process, or all) that fired in the last ``window``
    before ``now`` (the whole stored history if no window)."""
    since = None if window is None else (now or datetime.now(UTC)) - window
    acks = state.acknowledgements()
    current = {key: with_acks_and_silences(a, acks, ()) for key, a in state.alerts().items()}
    changes = [c for c in state.changes(since=since)
               if process is None or c.alert.process == process]
    return report(episodes(changes, current), hours, since, window)


class TimeToActCache:
    """Reports computed by ``measure``, kept per (process, window) until the history's latest
    change moves or ``ttl`` seconds pass; thread-safe (one computation at a time)."""

    def __init__(self, state: AlertState, hours: Hours, window: timedelta,
                 ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.hours = hours
        self.window = window
        self.ttl = ttl
        self.clock = clock
        self.computed = 0
        """How many reports were computed (not served from the cache)."""
        self._kept: dict[tuple[str | None, timedelta], tuple[int, float, Report]] = {}
        self._lock = threading.Lock()

    def report(self, process: str | None = None, window: timedelta | None = None) -> Report:
        """Time to act over ``window`` (the configured one if None), cached."""
        span = self.window if window is None else window
        with self._lock:
            last = self.state.last_change()
            kept = self._kept.get((process, span))
            now = self.clock()
            if kept is not None and kept[0] == last and now - kept[1] < self.ttl:
                return kept[2]
            found = measure(self.state, self.hours, process, span)
            self.computed += 1
            if len(self._kept) > 256:  # many ?days= values: start over rather than grow
                self._kept.clear()
            self._kept[(process, span)] = (last, now, found)
            return found


_SPANS = (("acknowledge", "Business hours from firing to acknowledged"),
          ("resolve", "Business hours from firing to resolved (or accepted as normal)"),
          ("confirm", "Business hours from firing to confirmed resolved"))

_COUNTS = (("", "Alert episodes that fired, per process", "episodes"),
           ("_recurred", "Alert episodes that came back after resolving, per process", "recurred"),
           ("_unacknowledged", "Alert episodes never acknowledged (open or closed), per process",
            "never_acknowledged"))


class TimeToActCollector(Collector):
    """The time-to-act gauges per process over the configured window, from the cache."""

    def __init__(self, cache: TimeToActCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        try:
            found = self.cache.report()
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
