"""The weekly digest job: for each escalation route whose digest is due, read the store, build
the digest (alerts/digest.py), render it per channel (alerts/digest_render.py) and put it in the
outbox under its deterministic id (alerts/digest_schedule.py), so that two workers, or a worker
restarted at the scheduled minute, queue it once. ``alerts run`` calls ``queue_due`` each
round; ``backlight alerts digest`` calls ``queue`` for the week due at a given time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from alerts.channels.text import encode
from alerts.digest import Digest, build
from alerts.digest_render import render
from alerts.digest_schedule import Week, digest_id, due, route_name, scheduled_week
from alerts.duration import parse_duration
from alerts.lifecycle import with_acks_and_silences
from alerts.routing import RouteSettings
from backlight.config import Settings
from schemas.alerts import Notification
from schemas.errors import BacklightError
from storage import open_alert_state, open_outbox

log = structlog.stdlib.get_logger("backlight.alerts.digest")


@dataclass(frozen=True)
class DigestReport:
    """The digests built (one per escalation route whose week was due, with the channels it
    goes to) and how many messages were new in the outbox (0 when all were queued before)."""

    digests: tuple[tuple[Digest, tuple[str, ...]], ...] = ()
    queued: int = 0


def escalation_routes(settings: Settings) -> list[RouteSettings]:
    """The routes that get a digest: those marked ``escalation = true``."""
    return [r for r in settings.alerts.routes if r.escalation]


def zone_of(settings: Settings, route: RouteSettings) -> str:
    """The calendar zone of the configured processes the route covers, when they share one;
    else ``[alerts.calendar]``'s."""
    from fnmatch import fnmatchcase

    zones = {(p.calendar or settings.alerts.calendar).timezone for p in settings.processes
             if fnmatchcase(p.name, route.process)}
    return zones.pop() if len(zones) == 1 else settings.alerts.calendar.timezone


def _escalate_after(settings: Settings) -> timedelta | None:
    text = settings.alerts.escalate_after
    return timedelta(seconds=parse_duration(text).wall_seconds) if text else None


def queue(settings: Settings, now: datetime, dry_run: bool = False,
          scheduled: bool = True) -> DigestReport:
    """Build and (unless ``dry_run``) queue each escalation route's digest: the week due now
    (``scheduled``: only when due within the catch-up time; else the latest week scheduled at
    or before ``now``, whatever the time)."""
    config = settings.alerts.digest
    weeks: list[tuple[RouteSettings, Week]] = []
    for route in escalation_routes(settings):
        zone = zone_of(settings, route)
        week = due(now, config, zone) if scheduled else scheduled_week(now, config, zone)
        if week is not None:
            weeks.append((route, week))
    if not weeks:
        return DigestReport()
    state = open_alert_state(settings.store.url, settings.store.session())
    try:
        acks = state.acknowledgements()
        alerts = {k: with_acks_and_silences(a, acks, ()) for k, a in state.alerts().items()}
        start = min(w.start for _, w in weeks)
        changes = state.changes(since=start, until=max(w.end for _, w in weeks))
    finally:
        state.close()
    channels = {c.name: c for c in settings.channels}
    runs: list[tuple[Digest, tuple[str, ...]]] = []
    notes: list[Notification] = []
    bodies: dict[str, bytes] = {}
    for route, week in weeks:
        digest = build(route, route_name(route), week, alerts, changes, _escalate_after(settings))
        names = tuple(n for n in route.channels if n in channels)
        for name in names:
            nid = digest_id(route, name, week)
            bodies[nid] = encode(render(digest, channels[name].type, nid, config.max_items))
            notes.append(Notification(id=nid, channel=name, process="", owner=None,
                                      changes=(), created_at=week.end.astimezone(UTC)))
        runs.append((digest, names))
    queued = 0
    if not dry_run and notes:
        outbox = open_outbox(settings.store.url, settings.store.session())
        try:
            queued = outbox.enqueue(notes, lambda n: bodies[n.id])
        finally:
            outbox.close()
    if queued:
        log.info("weekly digest queued", routes=len(runs), messages=queued)
    return DigestReport(tuple(runs), queued)


def queue_due(settings: Settings, now: datetime | None = None) -> DigestReport:
    """The worker's round: queue each route's digest if due now (wall clock by default). A
    store that cannot be read is logged and tried again next round; it never stops delivery."""
    try:
        return queue(settings, now or datetime.now(UTC))
    except BacklightError as exc:
        log.error("weekly digest not queued this round", error=str(exc))
        return DigestReport()
