"""What the pages and the API read and do, in one place: the store, the alert state, the caches.

Reads go through per-process caches (``ProcessCache``) that the store invalidates; actions
(review, acknowledge, silence) call the same functions as the CLI, so they write the same
records. Names that reach here come from URLs: an unknown process or alert raises ``NotFound``.
"""

from __future__ import annotations

import glob
import json
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import polars as pl
import structlog

from alerts.episode_series import EpisodeSeries, episode_series, span_of
from alerts.facts import Facts
from alerts.lifecycle import with_acks_and_silences
from alerts.registry import ProcessDefinition, review_due
from alerts.rules.stuck import ABANDONED, STUCK
from alerts.time_to_act import Report
from backlight import alerting, strict_json
from backlight.config import ProcessSettings, Settings
from backlight.figures_view import WINDOW_DAYS, FiguresOut, Window, figures_view, window_days
from backlight.mine import bpmn_document, conformance, json_document, xes_document
from backlight.overview import ProcessFigures, process_figures
from backlight.read_models import ReadModels
from backlight.time_to_act import TimeToActCache, business_hours, window_of
from backlight.web.cache import ProcessCache
from backlight.web.limits import STEP, quantise
from backlight.web.maps import MapRenderer
from backlight.web.windows import WINDOWS, StuckCase
from mining.frame import prepare
from mining.read_model import DAY_US
from mining.render import MapData, View
from mining.timerange import latest_allowed, within_range
from mining.windows import completed_between
from schemas.alerts import (
    Acceptance,
    Acknowledgement,
    Alert,
    AlertChange,
    AlertNote,
    Review,
    Silence,
    Status,
)
from schemas.errors import BacklightError
from schemas.event import from_time_us
from schemas.frame import FRAME_SCHEMA
from storage import ReadModelTables, open_alert_state, open_store
from storage.end_activities import EndActivityTables, KeptEnds

log = structlog.stdlib.get_logger("backlight.web")


def _describe(exc: BaseException) -> str:
    """An error as the overview shows it: its kind and first line, at most 300 characters."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


class NotFound(BacklightError):
    """A process or alert the URL names does not exist."""


@dataclass(frozen=True)
class Governance:
    """Owner and review standing of a process (read fresh: reviews change at any time)."""

    owners: tuple[str, ...]
    team: str | None
    last_reviewed: date | None
    reviewed_by: str | None
    review_due: date | None
    sla: str | None
    configured: bool

    @property
    def owner(self) -> str | None:
        return self.owners[0] if len(self.owners) == 1 else None

    def stale(self, today: date) -> bool:
        return self.review_due is None or self.review_due < today


@dataclass(frozen=True)
class ProcessRow:
    """One line of the overview: the process's figures, or why they could not be computed."""

    name: str
    figures: ProcessFigures | None
    """Its line from the read models (``backlight.overview``)."""
    governance: Governance | None
    open_alerts: dict[str, int]
    """Firing (and pending) alerts by severity."""
    error: str | None = None
    """What went wrong computing this process's line (its figures are then None)."""


FOLD_PER_REQUEST = 50_000
"""Most events a figures request folds before it answers (about 2 s on 2 cores)."""


class WebService:
    """The store, the alert state and the caches behind ``backlight serve``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings.store.url, settings.store.session())
        self.state = open_alert_state(settings.store.url, settings.store.session())
        self.act = TimeToActCache(self.state, business_hours(settings), window_of(settings))
        self.frames: ProcessCache[pl.DataFrame] = ProcessCache(
            self.store, settings.web.cache_entries)
        self.lines: ProcessCache[ProcessFigures] = ProcessCache(self.store, 4 * settings.web.cache_entries)
        self.figure_views: ProcessCache[FiguresOut] = ProcessCache(
            self.store, settings.web.cache_entries)
        self.documents: ProcessCache[str] = ProcessCache(self.store, 4 * settings.web.cache_entries)
        self.maps = MapRenderer(self.store, settings.web, 4 * settings.web.cache_entries)
        self.read_model_tables = ReadModelTables(settings.store.url, settings.store.session())
        self.read_models = ReadModels.for_settings(self.store, self.read_model_tables, settings)
        self.end_activity_tables = EndActivityTables(settings.store.url, settings.store.session())
        self._models_lock = threading.Lock()
        self._seen: set[str] = set()
        self._seen_seq = 0
        self._seen_lock = threading.Lock()

    def close(self) -> None:
        self.end_activity_tables.close()
        self.read_model_tables.close()
        self.state.close()
        self.store.close()

    # --- processes --------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Configured processes first, in config order, then those only seen in the store."""
        configured = [p.name for p in self.settings.processes]
        with self._seen_lock:  # only the rows stored since the last call are read
            if not self._seen and self._seen_seq == 0:
                # the processes folded so far, from the read models: the rows up to their mark
                # are never scanned (a full scan of the store was most of a first view)
                self._seen_seq = self.read_model_tables.mark(self.read_models.name)
                self._seen.update(self.read_model_tables.processes())
            changed = self.store.changed_since(self._seen_seq)
            if changed:
                self._seen.update(changed)
                self._seen_seq = max(self._seen_seq, *changed.values())
            seen = self._seen - set(configured)
        return configured + sorted(seen)

    def definition(self, name: str) -> ProcessDefinition:
        if name not in self.names():
            raise NotFound(f"no process named {name!r}")
        configured = next((p for p in self.settings.processes if p.name == name), None)
        proc = configured or ProcessSettings(name=name)
        reviews = self.state.reviews(name)
        return alerting._definition(self.settings, proc, reviews, configured=configured is not None)

    def end_activities(self, definition: ProcessDefinition) -> tuple[str, KeptEnds | None]:
        """Where the process's end activities come from ("configured", "learned", or "" when
        none is known yet) and, when learned, the kept version (which, when, from how many
        finished cases, the share each ends)."""
        if definition.end_activities:
            return "configured", None
        kept = self.end_activity_tables.current().get(definition.name)
        return ("learned", kept) if kept is not None else ("", None)

    def governance(self, definition: ProcessDefinition) -> Governance:
        due = (review_due(definition.last_reviewed, definition.review_interval_months)
               if definition.last_reviewed else None)
        return Governance(definition.owners, definition.team, definition.last_reviewed,
                          definition.reviewed_by, due,
                          str(definition.sla) if definition.sla else None, definition.configured)

    def _fold(self) -> None:
        """Fold what arrived into the read models (at most about ``FOLD_PER_REQUEST``), unless
        another instance (a consumer with ``--read-models``, another ``serve``) is folding:
        then read what it folds."""
        with self._models_lock:
            self.read_models.catch_up(limit=FOLD_PER_REQUEST, yielding=True)

    def line(self, name: str, window: str) -> ProcessFigures:
        """The process's figures in the window as the overview shows them."""
        if window not in WINDOWS:
            raise NotFound(f"no window {window!r}; allowed: {', '.join(WINDOWS)}")
        definition = self.definition(name)
        self._fold()
        return self._line(definition, window)

    def _line(self, definition: ProcessDefinition, window: str) -> ProcessFigures:
        """The line as the read models hold it now (no fold), kept until the process gets
        events once they are caught up (a line of figures still folding would be kept when no
        event comes to drop it)."""
        def compute() -> ProcessFigures:
            return process_figures(definition, window, self.read_model_tables, self.store)
        if self.unfolded():
            return compute()
        return self.lines.get((definition.name, window), compute)

    def window_events(self, name: str, window: str) -> pl.DataFrame:
        """The events of the cases the window's figures count, for what is drawn from the
        events (map, downloads, conformance, the `mine` document): for all time every case's
        (out-of-range times left out), else those of the cases completed in the window's days,
        read through the store's indexes (the cases with an event since its first day)."""
        if window not in WINDOWS:
            raise NotFound(f"no window {window!r}; allowed: {', '.join(WINDOWS)}")
        definition = self.definition(name)

        def build() -> pl.DataFrame:
            now = datetime.now(UTC)
            if WINDOW_DAYS[window] is None:
                return within_range(self.store.events(name), now).frame
            self._fold()
            span = window_days(self.read_model_tables, name, window, now)
            first = None if span is None else from_time_us(span[0])
            until = None if span is None else from_time_us(span[1] + DAY_US)
            if first is None or until is None:
                return pl.DataFrame(schema=FRAME_SCHEMA)
            return completed_between(self.store.events(name, cases_since=first), first, until,
                                     definition.end_activities)
        return self.frames.get((name, window), build)

    def stuck(self, name: str) -> tuple[StuckCase, ...]:
        """The cases the firing stuck alerts of the process list (as of the last alert
        round), longest idle first."""
        self.definition(name)
        out = []
        for alert in self.alerts(name):
            if alert.rule != STUCK.name or alert.status not in (Status.FIRING, Status.PENDING):
                continue
            if alert.subject == ABANDONED:  # abandoned, not stuck: the alert says so apart
                continue
            cases = alert.evidence.get("cases")
            for case in cases if isinstance(cases, list) else []:
                if isinstance(case, dict):
                    out.append(StuckCase(str(case.get("case_id")), str(case.get("step")),
                                         float(case.get("idle_days") or 0.0),
                                         str(case.get("since"))))
        return tuple(sorted(out, key=lambda c: (-c.idle_days, c.case_id)))

    def document(self, name: str, window: str) -> str:
        """The `mine --format json` document of the window's events (``window_events``) as
        JSON text, with the process's out-of-range events counted and its conformance to its
        reference model when the config names one."""
        frame = self.window_events(name, window)
        def build() -> str:
            out_of_range = self.store.out_of_range(name, latest_allowed(datetime.now(UTC)))
            return strict_json.dumps(json_document(name, [frame], out_of_range,
                                                   self.conformance(name, window)))
        return self.documents.get((name, window, frame.height, "document"), build)

    def figures(self, name: str, window: Window) -> FiguresOut:
        """The process's read-model figures in the window. Folds what arrived first, at most
        about ``FOLD_PER_REQUEST`` events (a store never folded is `backlight rebuild`'s or
        `consume --read-models`' work, not a page's: the answer says what is left)."""
        def compute() -> FiguresOut:
            with self._models_lock:
                return figures_view(self.read_models, self.read_model_tables, name, window,
                                    FOLD_PER_REQUEST)
        return compute() if self.unfolded() else self.figure_views.get((name, window), compute)

    def unfolded(self) -> int:
        """Stored events the read models have not folded yet (0 once a folder keeps up)."""
        return self.read_models.behind()

    def overview(self, window: str) -> list[ProcessRow]:
        """Every process's line from the read models, after folding what arrived (at most
        about ``FOLD_PER_REQUEST`` events, as ``figures``): never the event history."""
        if window not in WINDOWS:
            raise NotFound(f"no window {window!r}; allowed: {', '.join(WINDOWS)}")
        alerts = self.alerts()
        self._fold()
        rows = []
        for name in self.names():
            counts: dict[str, int] = {}
            for a in alerts:
                if a.process == name and a.status in (Status.FIRING, Status.PENDING):
                    counts[a.severity.value] = counts.get(a.severity.value, 0) + 1
            try:
                definition = self.definition(name)
                rows.append(ProcessRow(name, self._line(definition, window),
                                       self.governance(definition), counts))
            except Exception as exc:  # one process's data never hides the others
                log.exception("overview: the figures of one process failed", process=name,
                              window=window)
                rows.append(ProcessRow(name, None, None, counts, error=_describe(exc)))
        return rows

    # --- documents ---------------------------------------------------------------------------
    # Keyed by the window's events they are drawn from (their count): the caches notice new
    # events at their own moments, and a document must never outlive its events.

    def map_svg(self, name: str, window: str, view: View, activities: float,
                paths: float) -> str:
        """The map of the window's cases, its thresholds snapped to 5% steps, drawn through
        ``self.maps`` (bounded in concurrency and time, cached with its data version): with
        every activity shown from the read model, the window's days added up (never the
        history), else from the window's events (hiding activities projects the traces, which
        only the events can)."""
        if quantise(activities, STEP) >= 1.0:
            self.definition(name)
            self._fold()
            span = None if window == "all" else window_days(self.read_model_tables, name, window)
            with self._models_lock:
                figures = (self.read_models.figures(name) if window == "all" else
                           self.read_models.figures(name, *span) if span is not None else None)
            if figures is not None:
                return self.maps.svg(name, window, MapData.of(figures), figures.events, view,
                                     activities, paths)
        frame = self.window_events(name, window)
        return self.maps.svg(name, window, frame, frame.height, view, activities, paths)

    def bpmn(self, name: str, window: str) -> str:
        frame = self.window_events(name, window)
        if frame.is_empty():
            raise NotFound(f"no case of {name!r} in the window {window!r}: no model to discover")
        return self.documents.get((name, window, frame.height, "bpmn"),
                                  lambda: bpmn_document(frame)[0])

    def xes(self, name: str, window: str) -> str:
        frame = self.window_events(name, window)
        return self.documents.get((name, window, frame.height, "xes"),
                                  lambda: xes_document(frame, name))

    def conformance(self, name: str, window: str) -> dict[str, Any] | None:
        """Fitness of the window's events against the process's documented model; None without
        one (then no event is read)."""
        configured = next((p for p in self.settings.processes if p.name == name), None)
        if configured is None or configured.reference_model is None:
            return None
        frame = self.window_events(name, window)
        if frame.is_empty():
            return None
        text = self.documents.get((name, window, frame.height, "conformance"), lambda: strict_json.dumps(
            conformance(self.settings, name, frame, None)))
        result: dict[str, Any] | None = json.loads(text)
        return result

    # --- alerts ------------------------------------------------------------------------------

    def alerts(self, process: str | None = None) -> list[Alert]:
        """Every known alert, open ones first, then newest first, with the acknowledgements and
        silences recorded since the last evaluation already applied."""
        acks, silences = self.acknowledgements(), self.silences()
        found = [with_acks_and_silences(a, acks, silences) for a in self.state.alerts().values()
                 if process is None or a.process == process]
        rank = {Status.FIRING: 0, Status.PENDING: 1, Status.RESOLVED: 2, Status.CONFIRMED: 3}
        return sorted(found, key=lambda a: (rank.get(a.status, 3), -a.severity.rank,
                                            -a.last_seen.timestamp()))

    def alert(self, key: str) -> Alert:
        found = self.state.alerts().get(key)
        if found is None:
            raise NotFound(f"no alert with key {key!r}")
        return with_acks_and_silences(found, self.acknowledgements(), self.silences())

    def time_to_act(self, process: str | None = None, days: float | None = None) -> Report:
        """Time to act over the episodes that fired in the last ``days`` (the configured
        ``time_to_act_window`` if None), cached (``backlight.time_to_act``)."""
        if process is not None:
            self.definition(process)  # a 404 for an unknown process
        return self.act.report(process, None if days is None else timedelta(days=days))

    def history(self, key: str | None = None, limit: int = 50) -> list[AlertChange]:
        return self.state.history(key, limit=limit)

    def episode(self, alert: Alert) -> EpisodeSeries | None:
        """The alert's figure around its episode (``alerts.episode_series``), from the events
        of the cases active in its span (up to a day past it), in the process's business
        time; None for a rule without one."""
        span = span_of(alert)
        if span is None:
            return None
        definition = self.definition(alert.process)
        first = datetime.combine(span.start - timedelta(days=1), time(), UTC)
        now = min(datetime.combine(span.end + timedelta(days=2), time(), UTC), datetime.now(UTC))
        stored = self.store.events(alert.process, until=now, cases_since=first)
        kept = self.end_activity_tables.current().get(alert.process)
        ends = definition.end_activities or (kept.activities if kept else ())
        facts = Facts.build(prepare(within_range(stored, now).frame), definition.calendar, now,
                            end_activities=ends, segment_keys=tuple(alert.segment))
        return episode_series(alert, facts)

    def silences(self) -> list[Silence]:
        return self.state.silences(active_at=datetime.now(UTC))

    def acknowledgements(self) -> dict[str, Acknowledgement]:
        return self.state.acknowledgements()

    def reviews(self, name: str) -> list[Review]:
        return self.state.reviews(name)

    # --- actions (the CLI's own functions: the same records) --------------------------------

    def review(self, name: str, by: str, note: str) -> Review:
        self.definition(name)
        return alerting.record_review(self.settings, name, by, note)

    def acknowledge(self, key: str, by: str, note: str, owner: str | None = None,
                    action: str = "") -> Acknowledgement:
        self.alert(key)
        return alerting.acknowledge(self.settings, key, by, note, owner=owner, action=action)

    def add_note(self, key: str, by: str, text: str) -> AlertNote:
        self.alert(key)
        return alerting.add_note(self.settings, key, by, text)[0]

    def accept(self, key: str, by: str, why: str) -> Acceptance:
        self.alert(key)
        return alerting.accept(self.settings, key, by, why)

    def acceptances(self) -> dict[str, Acceptance]:
        return self.state.acceptances()

    def silence(self, key: str, by: str, why: str, until: datetime) -> Silence:
        alert = self.alert(key)
        # A silence's key is a shell pattern: this one is meant for this alert only.
        return alerting.silence(self.settings, until=until, by=by, why=why,
                                key=glob.escape(alert.key), rule=None, process=None)
