"""`ReadModels`: the store's events folded into the persisted read models, and read back.

`catch_up` follows the store's arrival sequence after the read models' mark, a batch at a
time: it folds each batch into one `mining.read_model.ReadModel` per process (a case's earlier
events come back from the store, `ReadModelTables.case_events`, up to the mark) and saves what
changed with the new mark in one transaction, compare-and-set (storage/read_models.py). An
instance whose save finds the mark moved by another drops what it folded and goes on from the
other's mark: no event is folded twice or skipped, however many instances follow.

`figures` reads a process's figures from the tables alone: for all time one row (the totals of
its completed and of its open cases), for a window the days from its first day on; never the
event history. A folder starts from the totals too, and reads a day or an open case only when
a new event touches it.

`rebuild` re-folds from the events (after a migration, or to repair), all processes or one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import ExitStack
from typing import Any, Final

import msgspec
import numpy as np
import structlog

from alerts.calendar import WorkCalendar
from backlight.config import Settings
from ingest.subscribers import Subscription
from mining.case_facts import CaseFacts
from mining.figures import Figures
from mining.read_model import Business, ReadModel, day_of
from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import EventStore, ReadModelTables, open_store

log = structlog.stdlib.get_logger("backlight.read_models")
_ENCODER = msgspec.json.Encoder()


def _dumps(doc: object) -> str:
    """A document as JSON text (msgspec: several times faster than json on these lists)."""
    return _ENCODER.encode(doc).decode()


def _loads(text: str) -> Any:
    """The document a JSON text holds."""
    return msgspec.json.decode(text)


NAME: Final = "read-models"
BATCH: Final = 5_000
YIELD_S: Final = 10.0
"""A reader (the web) leaves the folding to another instance that moved the mark within this
many seconds: two folders would each reload the models whenever the other saved."""
Progress = Callable[[int], None]
"""Called with the number of events just folded."""


class ReadModels:
    """The persisted read models of every process in one store; see the module."""

    def __init__(self, store: EventStore, tables: ReadModelTables,
                 end_activities: Mapping[str, Collection[str]] | None = None, *,
                 batch: int = BATCH, name: str = NAME,
                 calendars: Mapping[str, WorkCalendar] | None = None,
                 default_calendar: WorkCalendar | None = None,
                 yield_s: float = YIELD_S) -> None:
        """``end_activities`` and ``calendars``: per process (a process not named completes
        no case, and counts its working time in ``default_calendar``; none: no working time).
        ``yield_s``: how long a yielding catch-up leaves the folding to another instance after
        that instance last moved the mark."""
        self._store, self._tables = store, tables
        self._ends = {p: tuple(a) for p, a in (end_activities or {}).items()}
        self._calendars = dict(calendars or {})
        self._default_calendar = default_calendar
        self._batch, self.name = batch, name
        self._models: dict[str, ReadModel] = {}
        self._after = 0  # the mark the cached models were folded up to
        self._saved = -1  # the mark this instance's last save moved to
        self._yield_s = yield_s
        self._shaped: set[str] = set()  # processes whose stored shape was found to be ours

    def _model(self, process: str, after: int) -> ReadModel:
        """The process's model as stored at mark ``after``: its two totals, the days and open
        cases asked for as batches touch them (cached while the mark is ours; the caller
        checks the mark did not move while the totals were read)."""
        model = self._models.get(process)
        if model is None:
            docs = self._tables.totals(process)
            totals = (Figures(), Figures()) if docs is None else (
                Figures.from_doc(_loads(docs[0])), Figures.from_doc(_loads(docs[1])))
            model = self._models[process] = ReadModel(
                process, end_activities=self._ends.get(process, ()),
                history=lambda cases: self._tables.case_events(process, cases, self._after),
                stored=TablesStored(self._tables, process), totals=totals,
                business=self._business(process))
        return model

    @classmethod
    def for_settings(cls, store: EventStore, tables: ReadModelTables,
                     settings: Settings) -> ReadModels:
        """The read models as the settings define them: each configured process's end
        activities and calendar ([alerts.calendar] for the others)."""
        default = settings.alerts.calendar.calendar()
        calendars = {p.name: p.calendar.calendar() for p in settings.processes if p.calendar}
        return cls(store, tables, settings.end_activities, calendars=calendars,
                   default_calendar=default)

    def _business(self, process: str) -> Business | None:
        """The process's working time between moments, in microseconds (None: no calendar)."""
        calendar = self._calendars.get(process, self._default_calendar)
        return None if calendar is None else working_time(calendar)

    def shape(self, process: str) -> str:
        """What this instance folds the process with (its end activities and calendar): a
        process stored with another shape is folded again before anything is added to it."""
        calendar = self._calendars.get(process, self._default_calendar)
        return _dumps({"end_activities": sorted(self._ends.get(process, ())),
                       "calendar": None if calendar is None else repr(calendar)})

    def _reshape(self, processes: Collection[str]) -> bool:
        """Fold again, from the events, each of these processes stored with another shape (the
        config's end activities or calendar changed); whether any was."""
        stale = [p for p in processes if p not in self._shaped
                 and self._tables.shape(p) not in (None, self.shape(p))]
        for process in stale:
            log.warning(f"the read models of {process!r} were folded with other end activities or "
                        "another calendar: folding them again from the events")
            self._rebuild_one(process, None)
        self._shaped.update(processes)
        return bool(stale)

    def catch_up(self, progress: Progress | None = None, limit: int | None = None, *,
                 yielding: bool = False) -> int:
        """Fold the stored events after the mark (all of them, or batches until at least
        ``limit`` were folded); how many this instance folded. ``yielding`` (a reader: the web,
        the API): fold nothing while another instance is folding (it moved the mark in the
        last ``yield_s`` seconds: the tables say when the mark last moved), and read what it
        folds, rather than race it batch for batch, reloading the models each time either
        saves."""
        folded = 0
        while limit is None or folded < limit:
            after, saved_us = self._tables.saved_at(self.name)
            if after != self._after:
                self._models.clear()  # another instance folded meanwhile: read its result
                self._after = after
            if yielding and after != self._saved and \
                    time.time_ns() // 1000 - saved_us < self._yield_s * 1_000_000:
                return folded  # another instance moved the mark lately: it is folding
            rows = self._store.since(after, self._batch)
            if not rows:
                return folded
            events = [event for _, event, _ in rows]
            if self._reshape({event.process for event in events}):
                continue  # folded again up to the mark: read the result
            if self._fold(after, rows[-1][0], events):
                folded += len(events)
                if progress is not None:
                    progress(len(events))
        return folded

    def behind(self) -> int:
        """How many stored events are not folded yet (by arrival seq)."""
        return max(0, self._store.last_seq() - self._tables.mark(self.name))

    def _fold(self, after: int, mark: int, events: Sequence[CaseEvent]) -> bool:
        """Fold one batch and save it; False when another instance saved first."""
        by_process: dict[str, list[CaseEvent]] = {}
        for event in events:
            by_process.setdefault(event.process, []).append(event)
        days: dict[tuple[str, int], str | None] = {}
        open_cases: dict[tuple[str, str], str | None] = {}
        totals: dict[str, tuple[str, str, str]] = {}
        missing = [process for process in by_process if process not in self._models]
        for process in missing:
            self._model(process, after)
        if missing and self._tables.mark(self.name) != after:
            # another instance saved while these were read: they may hold its batch already
            self._models.clear()
            return False
        try:
            for process, batch in by_process.items():
                changes = self._model(process, after).update(batch).drain()
                for day, figures in changes.days.items():
                    days[(process, day)] = None if figures is None else _dumps(figures.to_doc())
                for case_id, facts in changes.open_cases.items():
                    open_cases[(process, case_id)] = None if facts is None else _dumps(facts.to_doc())
                totals[process] = (_dumps(changes.completed.to_doc()),
                                   _dumps(changes.open.to_doc()), self.shape(process))
            saved = self._tables.save(self.name, after, mark, days, open_cases, totals)
        except (ValueError, KeyError):
            # Days and open cases are read as the batch touches them: when another instance
            # saved meanwhile they may not add up (a sketch asked to remove what it lacks).
            # Its save moved the mark, so this fold could not have been saved anyway.
            self._models.clear()
            if self._tables.mark(self.name) != after:
                return False
            self._shaped.clear()  # another instance may have folded with another shape
            if any(self._tables.shape(p) not in (None, self.shape(p)) for p in by_process):
                return False
            raise
        except BaseException:
            self._models.clear()  # folded but not saved: the cache is ahead of the tables
            raise
        if saved:
            self._after = self._saved = mark
        else:
            self._models.clear()
        return saved

    def figures(self, process: str, since_us: int | None = None,
                until_us: int | None = None) -> Figures:
        """Like the module's `figures`, from the model in memory where this instance holds the
        process's current one (all time: no document to parse), else from the tables."""
        model = self._models.get(process)
        if since_us is None and model is not None and self._tables.mark(self.name) == self._after:
            return model.figures()
        return figures(self._tables, process, since_us, until_us)

    def rebuild(self, process: str | None = None, progress: Progress | None = None) -> int:
        """Forget the read models (one process's, or all) and fold them again from the events
        up to the current mark (all: up to the last event); how many events were folded."""
        if process is None:
            self._tables.clear(self.name)
            self._models.clear()
            self._after = 0
            return self.catch_up(progress)
        return self._rebuild_one(process, progress)

    def _rebuild_one(self, process: str, progress: Progress | None) -> int:
        """Re-fold one process's events up to the mark, and save it under the same mark."""
        reached = [0]  # the last seq folded: the model's history is the events up to it

        def history(cases: Collection[str]) -> Mapping[str, Sequence[CaseEvent]]:
            return self._tables.case_events(process, cases, reached[0])

        while True:
            mark = self._tables.mark(self.name)
            reached[0] = 0
            model = ReadModel(process, end_activities=self._ends.get(process, ()), history=history,
                              business=self._business(process))
            folded = 0
            while reached[0] < mark:
                rows = [row for row in self._store.since(reached[0], self._batch) if row[0] <= mark]
                if not rows:
                    break
                mine = [event for _, event, _ in rows if event.process == process]
                model.update(mine)
                reached[0] = rows[-1][0]
                folded += len(mine)
                if progress is not None:
                    progress(len(rows))
            stored = self._tables.load(process)
            days: dict[tuple[str, int], str | None] = {(process, d): None for d in stored.days}
            days.update({(process, d): _dumps(f.to_doc()) for d, f in model.days.items()})
            cases: dict[tuple[str, str], str | None] = {(process, c): None for c in stored.open_cases}
            cases.update({(process, c): _dumps(f.to_doc()) for c, f in model.open_cases.items()})
            totals = {process: (_dumps(model.completed().to_doc()),
                                _dumps(model.open_figures.to_doc()), self.shape(process))}
            if self._tables.save(self.name, mark, mark, days, cases, totals):
                self._models.pop(process, None)
                return folded


def working_time(calendar: WorkCalendar) -> Business:
    """Working microseconds between moments in ``calendar`` (what a read model folds)."""

    def working(first: Sequence[int], last: Sequence[int]) -> Sequence[float]:
        seconds = calendar.business_seconds(np.asarray(first, dtype=np.int64),
                                            np.asarray(last, dtype=np.int64))
        return list(np.rint(seconds * 1e6))
    return working


def subscription(settings: Settings, closing: ExitStack) -> Subscription:
    """What `backlight consume --read-models` adds: a subscriber that, after each stored batch,
    folds what its instance has not folded yet (from the read models' own mark, so it needs
    no mark of the dispatcher's); its connections close with ``closing``."""
    store = closing.enter_context(contextlib.closing(
        open_store(settings.store.url, settings.store.session())))
    tables = closing.enter_context(contextlib.closing(
        ReadModelTables(settings.store.url, settings.store.session())))
    models = ReadModels.for_settings(store, tables, settings)

    def fold(events: Sequence[CaseEvent], origins: Sequence[Coordinates | None]) -> None:
        models.catch_up()

    return Subscription(NAME, fold, start="end")


def figures(tables: ReadModelTables, process: str, since_us: int | None = None,
            until_us: int | None = None) -> Figures:
    """A process's figures from the tables: the cases completed from the UTC day of ``since_us``
    to that of ``until_us`` (no end when None), or, when ``since_us`` is None, every case
    (completed and open: what `mine` counts)."""
    if since_us is None:
        docs = tables.totals(process)
        if docs is None:
            return Figures()
        return Figures.from_doc(_loads(docs[0])).merge(Figures.from_doc(_loads(docs[1])))
    total = Figures()
    until = None if until_us is None else day_of(until_us)
    for doc in tables.days(process, day_of(since_us), until).values():
        total.merge(Figures.from_doc(_loads(doc)))
    return total


class TablesStored:
    """One process's days and open cases in the tables, as a `mining.read_model.Stored`."""

    def __init__(self, tables: ReadModelTables, process: str) -> None:
        self._tables, self._process = tables, process

    def days(self, keys: Collection[int]) -> Mapping[int, Figures]:
        return {d: Figures.from_doc(_loads(doc))
                for d, doc in self._tables.day_docs(self._process, keys).items()}

    def days_from(self, start: int) -> Mapping[int, Figures]:
        return {d: Figures.from_doc(_loads(doc))
                for d, doc in self._tables.days(self._process, start).items()}

    def open_cases(self, case_ids: Collection[str]) -> Mapping[str, CaseFacts]:
        return {c: CaseFacts.from_doc(_loads(doc))
                for c, doc in self._tables.open_docs_of(self._process, case_ids).items()}
