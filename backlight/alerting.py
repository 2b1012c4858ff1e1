"""The alert jobs behind ``backlight alerts ...`` and ``backlight review``: the I/O around the
pure rules and lifecycle (read the store, keep the state, fill the outbox, deliver)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
import structlog

from alerts.anchors import anchors_of
from alerts.channels import payload_for
from alerts.context import BaselineAnchor
from alerts.delivery import DeliveryReport, HttpxTransport, Transport, deliver
from alerts.duration import parse_duration
from alerts.ends import decide, learn
from alerts.errors import AlertError
from alerts.evaluate import run_rules
from alerts.lifecycle import LifecyclePolicy, advance, with_acks_and_silences
from alerts.reach import history_start
from alerts.registry import ProcessDefinition, build_definition
from alerts.routing import route
from alerts.rules import RULES
from backlight.config import ConfigError, ProcessSettings, Settings
from backlight.digest_job import queue_due
from mining.frame import Events, prepare
from mining.timerange import within_range
from schemas.alerts import (
    Acceptance,
    Acknowledgement,
    Alert,
    AlertChange,
    AlertNote,
    Change,
    Finding,
    Notification,
    Review,
    Silence,
)
from schemas.errors import BacklightError
from schemas.printable import printable
from storage import AlertState, EventStore, evaluation_lease, open_alert_state, open_outbox, open_store
from storage.end_activities import EndActivityTables, KeptEnds

log = structlog.stdlib.get_logger("backlight.alerts")


@dataclass(frozen=True)
class EvaluationReport:
    """What one evaluation found and decided."""

    now: datetime
    findings: tuple[Finding, ...]
    alerts: tuple[Alert, ...]
    """Every alert of the evaluated processes that is pending or firing now, or resolved now."""
    changes: tuple[AlertChange, ...]
    notifications: tuple[Notification, ...]
    notes: tuple[str, ...] = ()
    dry_run: bool = False
    failed: tuple[ProcessFailure, ...] = ()
    """Processes whose rules could not run on their stored events (the others were evaluated)."""


@dataclass(frozen=True)
class ProcessFailure:
    """One process an evaluation could not evaluate, and why (the error as its text)."""

    process: str
    error: str


@contextlib.contextmanager
def _opened(settings: Settings) -> Iterator[tuple[EventStore, AlertState]]:
    store = open_store(settings.store.url, settings.store.session())
    try:
        state = open_alert_state(settings.store.url, settings.store.session())
        try:
            yield store, state
        finally:
            state.close()
    finally:
        store.close()


def definitions(settings: Settings, state: AlertState, store: EventStore,
                load: Callable[[str], object] | None = None) -> list[ProcessDefinition]:
    """Every process to evaluate: those configured, and those with events but no config."""
    configured = {p.name: p for p in settings.processes}
    names = list(configured) + [c.process for c in store.counts() if c.process not in configured]
    reviews = state.reviews()
    out = []
    for name in names:
        proc = configured.get(name) or ProcessSettings(name=name)
        out.append(_definition(settings, proc, [r for r in reviews if r.process == name],
                               configured=name in configured))
    return out


def _definition(settings: Settings, proc: ProcessSettings, reviews: Sequence[Review],
                configured: bool) -> ProcessDefinition:
    calendar = (proc.calendar or settings.alerts.calendar).calendar()
    return build_definition(
        proc.name, owners=proc.owners, team=proc.team, last_reviewed=proc.last_reviewed,
        reviews=reviews, review_interval_months=proc.review_interval_months, sla=proc.sla,
        calendar=calendar, reference_model=proc.reference_model,
        end_activities=proc.end_activities, rules=settings.alerts.rules.merged(proc.rules),
        configured=configured)


def policy(settings: Settings) -> LifecyclePolicy:
    a = settings.alerts
    return LifecyclePolicy(
        pending_for=_wall(a.pending_for), resolve_after=_wall(a.resolve_after),
        repeat_interval=_wall(a.repeat_interval), flap_window=_wall(a.flap_window),
        flap_changes=a.flap_changes,
        escalate_after=_wall(a.escalate_after) if a.escalate_after else None,
        confirm_after=parse_duration(a.confirm_after),
        recurrence_window=_wall(a.recurrence_window))


def _wall(text: str | None) -> timedelta:
    return timedelta(0) if not text else timedelta(seconds=parse_duration(text).wall_seconds)


def evaluate(settings: Settings, now: datetime | None = None, dry_run: bool = False,
             processes: Sequence[str] = ()) -> EvaluationReport:
    """Evaluate every rule once; unless ``dry_run``, keep the new state and fill the outbox.

    Unless ``dry_run``, each process is evaluated under its lease (``AlertState.take_leases``):
    a process another worker is evaluating right now is skipped this round (a note says so),
    so two workers (``alerts run`` twice, or beside ``consume --alerts``) never evaluate one
    process at once, and the state is stored only while the lease is still held."""
    notes: list[str] = []
    findings: list[Finding] = []
    with _opened(settings) as (store, state):
        defs = definitions(settings, state, store)
        if processes:
            unknown = sorted(set(processes) - {d.name for d in defs})
            if unknown:
                raise ConfigError(f"--process {unknown[0]!r}: not configured and no events of it")
            defs = [d for d in defs if d.name in processes]
        lease = _Leases(state, [d.name for d in defs]) if not dry_run else None
        try:
            if lease is not None:
                notes += [f"{name}: another worker is evaluating it; skipped this round"
                          for name in lease.busy]
                defs = [d for d in defs if d.name in lease.held]
            now = now or datetime.now(UTC)  # taken under the lease: never older than the state
            failed: list[ProcessFailure] = []
            history = _wall(settings.alerts.history)
            # the stored state, read under the lease: the open and accepted episodes pin their
            # keys' baselines for the rules (alerts.anchors)
            previous = state.alerts()
            acceptances = state.acceptances()
            anchors = anchors_of(previous.values(), acceptances)
            ends = EndActivityTables(settings.store.url, settings.store.session())
            try:
                kept_ends = ends.current()
                for definition in defs:
                    stored = history_of(store, definition, now, history)
                    try:
                        found, learned, keep = _evaluate_one(
                            settings, definition, stored, now, kept_ends.get(definition.name),
                            anchors, _whole_history(store, definition.name, now))
                    except Exception as exc:  # one process's data never stops the others
                        failed.append(_failure(definition.name, exc))
                    else:
                        findings.extend(found)
                        notes.extend(learned)
                        if keep is not None and lease is not None:
                            ends.keep(keep)
                    finally:
                        if lease is not None:
                            lease.renew()
            finally:
                ends.close()
            notes += [f"{f.process}: could not evaluate it: {f.error}" for f in failed]
            broken = {f.process for f in failed}
            evaluated = [d for d in defs if d.name not in broken]
            result = advance(previous, findings, now=now, policy=policy(settings),
                             owners={d.name: d.owner for d in defs},
                             evaluated={d.name for d in evaluated},
                             silences=state.silences(active_at=now),
                             acks=state.acknowledgements(), base_url=settings.alerts.base_url,
                             calendars={d.name: d.calendar for d in defs},
                             acceptances=acceptances)
            notifications = route(result.changes, settings.alerts.routes,
                                  {c.name: c for c in settings.channels}, now)
            if lease is not None:
                # The outbox first, then the state: a crash in between evaluates the same
                # transitions again, whose notifications have the same ids (queued once).
                if notifications:
                    outbox = open_outbox(settings.store.url, settings.store.session())
                    try:
                        outbox.enqueue(notifications,
                                       payload_for({c.name: c for c in settings.channels}))
                    finally:
                        outbox.close()
                # A process that failed keeps its stored state as it was (not in the scope).
                state.commit(result.alerts, result.changes,
                             [p for p in lease.held if p not in broken], lease.holder)
        finally:
            if lease is not None:
                lease.release()
    shown = tuple(a for a in result.alerts if a.process in {d.name for d in evaluated}
                  and (not a.closed or a.resolved_at == now or a.confirmed_at == now))
    log.info("alerts evaluated", processes=len(evaluated), failed=len(failed),
             findings=len(findings), changes=len(result.changes),
             notifications=len(notifications), dry_run=dry_run)
    return EvaluationReport(now, tuple(findings), shown, tuple(result.changes),
                            tuple(notifications), tuple(notes), dry_run, tuple(failed))


def history_of(store: EventStore, definition: ProcessDefinition, now: datetime,
               history: timedelta) -> pl.DataFrame:
    """The events a round at ``now`` reads (``alerts.reach``): up to now, of the cases with an
    event since the history's start (those stored with a time before 1970 are then left out
    of the evaluation)."""
    until = now + timedelta(microseconds=1)
    latest = store.latest(definition.name, until)
    start = history_start(definition, now, latest, history)
    return store.events(definition.name, until=until, cases_since=start)


def _whole_history(store: EventStore, process: str, now: datetime) -> Callable[[], Events]:
    """The process's every stored event up to ``now``, read when called."""
    until = now + timedelta(microseconds=1)
    return lambda: prepare(within_range(store.events(process, until=until), now).frame)


def _evaluate_one(settings: Settings, definition: ProcessDefinition, stored: pl.DataFrame,
                  now: datetime, kept: KeptEnds | None = None,
                  anchors: dict[str, BaselineAnchor] | None = None,
                  whole: Callable[[], Events] | None = None,
                  ) -> tuple[list[Finding], list[str], KeptEnds | None]:
    """One process's rules on its stored events: its findings, notes, and the end activities to
    keep when they were learned or changed now (raises whatever its data makes the preparation
    or a rule raise). ``whole`` reads the process's whole history, for learning its end
    activities where the round's events have too few finished cases."""
    notes: list[str] = []
    keep = None
    events = prepare(within_range(stored, now).frame)
    if not definition.end_activities and events.df.height:
        definition, keep, notes = with_learned_ends(definition, events, now, kept, whole)
    return list(run_rules(definition, events, now, anchors=anchors)), notes, keep


def with_learned_ends(definition: ProcessDefinition, events: Events, now: datetime,
                      kept: KeptEnds | None, whole: Callable[[], Events] | None = None,
                      ) -> tuple[ProcessDefinition, KeptEnds | None, list[str]]:
    """A definition without configured end activities, given the kept ones (``kept``, learned
    in an earlier round) or, the first time there is enough finished history, those learned
    now; the version to keep when they were learned or changed now, and notes saying which
    (``alerts.ends``: learned once, changed only on strong evidence).

    Nothing kept yet and too few finished cases among the round's events (which are the
    cases active in its ``history``): the ends are learned from ``whole``, the process's every
    stored event, where given. A process that is slow or small (the road-traffic fines: a
    hundred cases over thirteen years, finished after 840 days' quiet) has almost no finished
    case in one year's window, and learning there chose nothing or a step where one branch
    pauses (Add penalty, Send Fine), listing paid fines as stuck. Read until enough is kept:
    for a process with a long history that is once; a young one's whole history is its window."""
    learning = learn(events, now)
    if kept is None and not learning.enough and whole is not None:
        fuller = learn(whole(), now)
        if fuller.finished > learning.finished:
            learning = fuller
    keep = decide(definition.name, kept, learning)
    current = keep or kept
    name = definition.name
    if current is not None:
        ends, how = current.activities, (f"kept since {current.learned_at.date()}, learned from "
                                         f"{current.cases} finished cases")
    else:
        ends, how = learning.provisional, (f"provisional: {learning.finished} finished cases "
                                           "so far, too few to keep")
    notes = [f"{name}: no end_activities configured; learned from the data: {', '.join(ends)}",
             f"{name}: end activities {how}"] if ends else []
    if keep is not None:
        say = log.info if keep.version == 1 else log.warning
        say("end activities learned" if keep.version == 1 else "end activities changed",
            process=name, end_activities=",".join(keep.activities), reason=keep.reason,
            version=keep.version)
        if keep.version > 1:
            notes.append(f"{name}: end activities changed: {keep.reason}")
    learned = dataclasses.replace(definition, end_activities=ends, end_activities_learned=bool(ends))
    return learned, keep, notes


def _failure(process: str, exc: Exception) -> ProcessFailure:
    """The failure of one process's evaluation, logged with its traceback."""
    error = printable(f"{type(exc).__name__}: {exc}")[:500]
    log.error("could not evaluate a process; the others were evaluated", exc_info=exc,
              process=printable(process), summary=error)
    return ProcessFailure(process, error)


EVALUATION_LEASE = timedelta(minutes=5)
"""How long an evaluation holds a process before another worker may take it over (a worker
that died leaves its processes to the others after this); renewed every RENEW_AFTER."""
RENEW_AFTER = timedelta(minutes=1)


class _Leases:
    """The evaluation leases one evaluation holds: taken at once, renewed as it goes on."""

    def __init__(self, state: AlertState, processes: Sequence[str]) -> None:
        self.state = state
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._names = {evaluation_lease(p): p for p in processes}
        taken = set(state.take_leases(list(self._names), self.holder, EVALUATION_LEASE))
        self.held = [p for name, p in self._names.items() if name in taken]
        self.busy = [p for name, p in self._names.items() if name not in taken]
        self._taken_at = time.monotonic()

    def renew(self) -> None:
        """Extend the leases held when RENEW_AFTER has passed since they were last taken."""
        if time.monotonic() - self._taken_at >= RENEW_AFTER.total_seconds():
            self.state.take_leases([evaluation_lease(p) for p in self.held], self.holder,
                                   EVALUATION_LEASE)
            self._taken_at = time.monotonic()

    def release(self) -> None:
        """Let other workers evaluate these processes at once (a failure just lets them expire)."""
        try:
            self.state.release_leases([evaluation_lease(p) for p in self.held], self.holder)
        except BacklightError as exc:
            log.warning("could not release evaluation leases", error=str(exc))


def transports(settings: Settings) -> dict[str, Transport]:
    """One transport per channel kind: HTTP for chat and webhooks, Kafka for CloudEvents."""
    out: dict[str, Transport] = {"http": HttpxTransport()}
    if any(c.type == "kafka" for c in settings.channels):
        from backlight.kafka_alerts import KafkaTransport  # Kafka's client only where used

        k = settings.kafka
        out["kafka"] = KafkaTransport(k.bootstrap_servers, **k.client_options())
    return out


def deliver_outbox(settings: Settings, now: Callable[[], datetime] | None = None) -> DeliveryReport:
    """Send what is due in the outbox once."""
    outbox = open_outbox(settings.store.url, settings.store.session())
    sends = transports(settings)
    try:
        return deliver(outbox, {c.name: c for c in settings.channels}, sends,
                       now or (lambda: datetime.now(UTC)))
    finally:
        outbox.close()
        for transport in sends.values():
            transport.close()


def run(settings: Settings, every: timedelta, stop: threading.Event,
        on_round: Callable[[EvaluationReport, DeliveryReport], object] | None = None) -> None:
    """Evaluate and deliver every ``every`` until stopped; chat failures never stop the loop
    (the outbox keeps what was not delivered and retries it)."""
    while not stop.is_set():
        try:
            report = evaluate(settings)
            queue_due(settings)  # the weekly digest, once per route and week (outbox ids)
            delivered = deliver_outbox(settings)
        except ConfigError:
            raise
        except BacklightError as exc:  # the store is busy or gone: try again next round
            log.error("alert round failed", error=str(exc))
        else:
            if on_round:
                on_round(report, delivered)
        stop.wait(every.total_seconds())


def record_review(settings: Settings, process: str, by: str, note: str,
                  now: datetime | None = None) -> Review:
    """``backlight review``: a process definition was reviewed by a person."""
    if not by.strip():
        raise ConfigError("--by: say who reviewed it")
    with _opened(settings) as (store, state):
        known = {p.name for p in settings.processes} | {c.process for c in store.counts()}
        if process not in known:
            raise ConfigError(f"PROCESS {process!r}: not configured and no events of it; "
                              f"known: {', '.join(sorted(known)) or 'none'}")
        review = Review(process, by.strip(), now or datetime.now(UTC), note)
        state.record_review(review)
    return review


TYPED_MAX = 2000
"""The longest text a person may type into an acknowledgement, note or reason (as the web's
forms and the API allow)."""


def _typed(**fields: str | None) -> None:
    """What people type goes to the store and to chat: refuse, naming the option, a text longer
    than ``TYPED_MAX`` or with a NUL (PostgreSQL's text cannot hold one)."""
    for name, value in fields.items():
        if value is None:
            continue
        if "\x00" in value:
            raise ConfigError(f"--{name}: contains a NUL character")
        if len(value) > TYPED_MAX:
            raise ConfigError(f"--{name}: at most {TYPED_MAX} characters ({len(value)} given)")


def acknowledge(settings: Settings, key: str, by: str, note: str,
                now: datetime | None = None, owner: str | None = None,
                action: str = "") -> Acknowledgement:
    """Someone takes an alert on, naming who owns the fix (``owner``, default ``by``) and what
    is being done (``action``); the next evaluation announces it once (ACKNOWLEDGED)."""
    if not by.strip():
        raise ConfigError("--by: say who takes it on")
    _typed(by=by, note=note, owner=owner, action=action)
    ack = Acknowledgement(key, by.strip(), now or datetime.now(UTC), note,
                          owner=(owner or "").strip() or None, action=action.strip())
    with _opened(settings) as (_store, state):
        state.acknowledge(ack)
    return ack


def accept(settings: Settings, key: str, by: str, why: str,
           now: datetime | None = None) -> Acceptance:
    """``backlight alerts accept``: the owner accepts an open alert's new level as normal; the
    next evaluation resolves it (ACCEPTED, sent once) and that level is its baseline from then
    on (``alerts.anchors``)."""
    if not by.strip():
        raise ConfigError("--by: say who accepts it")
    if not why.strip():
        raise ConfigError("--why: say why the new level is normal")
    _typed(by=by, why=why)
    rule = next((r for r in RULES if key.startswith(f"{r.name}/")), None)
    if rule is not None and not rule.baseline:
        raise AlertError(f"alert {key!r}: rule {rule.name!r} has no baseline, so there is no new"
                         " level to accept as normal; fix the cause, or silence it")
    acceptance = Acceptance(key, by.strip(), now or datetime.now(UTC), why.strip())
    with _opened(settings) as (_store, state):
        state.accept(acceptance)
    return acceptance


def add_note(settings: Settings, key: str, by: str, text: str,
             now: datetime | None = None) -> tuple[AlertNote, bool]:
    """A note on an open alert (what was done, what is next): kept in its history and, when
    the alert was announced and is not silenced, sent once to its routes (``Change.NOTE``),
    through the outbox; returns the note and whether it was queued for sending."""
    if not by.strip():
        raise ConfigError("--by: say who writes the note")
    if not text.strip():
        raise ConfigError("--text: say what was done or what is next")
    _typed(by=by, text=text)
    now = now or datetime.now(UTC)
    note = AlertNote(key, by.strip(), now, text.strip())
    with _opened(settings) as (_store, state):
        alert = state.alerts().get(key)
        if alert is None or alert.closed:
            state.add_note(note)  # refuses it, naming why (no such alert, or it is closed)
            return note, False
        alert = with_acks_and_silences(alert, state.acknowledgements(),
                                       state.silences(active_at=now))
        change = AlertChange(Change.NOTE, alert, now, note_transition(alert, note), note=note)
        sent = alert.notified_at is not None and not alert.silenced
        if sent:
            channels = {c.name: c for c in settings.channels}
            notifications = route([change], settings.alerts.routes, channels, now)
            # The outbox first: a crash before the note is stored queues nothing twice on a
            # retry of the same note (same transition, same notification ids).
            outbox = open_outbox(settings.store.url, settings.store.session())
            try:
                outbox.enqueue(notifications, payload_for(channels))
            finally:
                outbox.close()
        state.add_note(note, change)
    log.info("alert note added", key=printable(key), sent=sent)
    return note, sent


def note_transition(alert: Alert, note: AlertNote) -> str:
    """What identifies a NOTE change (its alert's episode, the note's time and author), as
    ``alerts.lifecycle.transition`` identifies the lifecycle's changes."""
    return "\x1f".join((alert.key, f"since {alert.first_seen.isoformat()}", Change.NOTE.value,
                        f"{note.at.isoformat()} {note.by}"))


def silence(settings: Settings, *, until: datetime, by: str, why: str, key: str | None,
            rule: str | None, process: str | None, now: datetime | None = None) -> Silence:
    now = now or datetime.now(UTC)
    if not any((key, rule, process)):
        raise ConfigError("silence: give at least one of --key, --rule, --process")
    if until <= now:
        raise ConfigError(f"--until {until.isoformat()}: must be in the future")
    if not why.strip():
        raise ConfigError("--why: say why it is silenced")
    created = Silence(id=uuid.uuid4().hex[:12], until=until, by=by, why=why, created_at=now,
                      key=key, rule=rule, process=process)
    with _opened(settings) as (_store, state):
        return state.add_silence(created)


def unsilence(settings: Settings, silence_id: str, by: str,
              now: datetime | None = None) -> Silence:
    with _opened(settings) as (_store, state):
        return state.expire_silence(silence_id, by, now or datetime.now(UTC))


def listing(settings: Settings) -> tuple[list[Alert], list[Silence]]:
    """Every known alert (newest first) and the active silences, with the acknowledgements
    and silences recorded since the last evaluation applied (as the web shows them)."""
    now = datetime.now(UTC)
    with _opened(settings) as (_store, state):
        acks, silences = state.acknowledgements(), state.silences(active_at=now)
        alerts = sorted((with_acks_and_silences(a, acks, silences) for a in state.alerts().values()),
                        key=lambda a: a.last_seen, reverse=True)
        return alerts, silences
