"""The JSON API under ``/api``: what the pages show and do (paths as in DESIGN.md).

Reads return the `mine` document and the alerts' own JSON; writes record who did them (the
authenticated user, never a name from the body). Authentication has already been checked by
the app's middleware when a handler runs, so an unknown process or alert is a 404 only for a
caller who may write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from backlight.web.auth import Principal
from backlight.web.service import ProcessRow, WebService
from backlight.web.windows import DEFAULT_WINDOW
from schemas.alerts import JsonValue

Window = Annotated[Literal["4w", "quarter", "all"], Query(description="time window")]
router = APIRouter(prefix="/api", tags=["api"])


def service(request: Request) -> WebService:
    svc: WebService = request.app.state.service
    return svc


def writer(request: Request) -> Principal:
    """The authenticated writer (the middleware refused everyone else already)."""
    principal: Principal = request.state.principal
    return principal


Service = Annotated[WebService, Depends(service)]
Writer = Annotated[Principal, Depends(writer)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class WeekOut(_Out):
    week: str
    cases: int
    median_seconds: float


class ProcessOut(_Out):
    """One process as the overview shows it, from its read model (see ``backlight.overview`` for
    what each figure counts). When its figures could not be computed, ``error``
    says why and every figure is null (the other processes are listed as usual)."""

    name: str
    error: str | None = None
    events: int | None
    out_of_range_events: int | None = Field(
        description="events whose time is before 1970-01-01 or later than now plus a day "
                    "(stored before decode refused such times): in no window's days and not "
                    "in as_of; the read models count them only in \"all\"")
    cases: int | None
    open_cases: int | None
    as_of: datetime | None
    median_case_seconds: float | None
    weekly: list[WeekOut]
    sla: str | None
    sla_met: float | None
    rework_share: float | None
    open_alerts: dict[str, int]
    owners: list[str]
    owner: str | None
    team: str | None
    last_reviewed: str | None
    reviewed_by: str | None
    review_due: str | None
    review_stale: bool | None
    configured: bool | None

    @classmethod
    def failed(cls, row: ProcessRow) -> ProcessOut:
        return cls(name=row.name, error=row.error or "no figures", events=None,
                   out_of_range_events=None, cases=None, open_cases=None, as_of=None,
                   median_case_seconds=None, weekly=[], sla=None, sla_met=None,
                   rework_share=None, open_alerts=row.open_alerts, owners=[], owner=None,
                   team=None, last_reviewed=None, reviewed_by=None, review_due=None,
                   review_stale=None, configured=None)

    @classmethod
    def of(cls, row: ProcessRow, today: datetime) -> ProcessOut:
        s, g = row.figures, row.governance
        if s is None or g is None:
            return cls.failed(row)
        return cls(
            name=s.process, events=s.events, out_of_range_events=s.out_of_range, cases=s.cases,
            open_cases=s.open_cases,
            as_of=s.as_of, median_case_seconds=s.median_case_s,
            weekly=[WeekOut(week=w.week, cases=w.cases, median_seconds=w.median_seconds)
                    for w in s.weekly],
            sla=g.sla, sla_met=s.sla_met, rework_share=s.rework_share,
            open_alerts=row.open_alerts, owners=list(g.owners), owner=g.owner, team=g.team,
            last_reviewed=g.last_reviewed.isoformat() if g.last_reviewed else None,
            reviewed_by=g.reviewed_by,
            review_due=g.review_due.isoformat() if g.review_due else None,
            review_stale=g.stale(today.date()), configured=g.configured)


class StuckOut(_Out):
    case_id: str
    step: str
    idle_days: float
    since: str


class ReviewIn(BaseModel):
    note: str = Field("", max_length=2000)


class ReviewOut(_Out):
    process: str
    by: str
    at: datetime
    note: str


class AckIn(BaseModel):
    note: str = Field("", max_length=2000)
    owner: str | None = Field(None, max_length=200,
                              description="Who owns the fix (default: whoever acknowledges)")
    action: str = Field("", max_length=2000, description="What is being done about it")


class AcceptIn(BaseModel):
    why: str = Field(min_length=1, max_length=2000)


class AcceptOut(_Out):
    key: str
    by: str
    at: datetime
    why: str


class AckOut(_Out):
    key: str
    by: str
    at: datetime
    note: str
    owner: str
    action: str


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000, description="What was done or is next")


class NoteOut(_Out):
    key: str
    by: str
    at: datetime
    text: str


class SilenceIn(BaseModel):
    until: datetime = Field(description="RFC 3339 with an offset; must be in the future")
    why: str = Field(min_length=1, max_length=2000)


class SilenceOut(_Out):
    id: str
    key: str | None
    rule: str | None
    process: str | None
    until: datetime
    by: str
    why: str
    created_at: datetime


@router.get("/processes", response_model=list[ProcessOut])
def list_processes(svc: Service, window: Window = DEFAULT_WINDOW) -> list[ProcessOut]:
    """Every process with its figures, owner and review standing (the overview)."""
    now = datetime.now(UTC)
    return [ProcessOut.of(row, now) for row in svc.overview(window)]


@router.get("/processes/{name}", response_class=Response,
            responses={200: {"content": {"application/json": {}}}})
def get_process(name: str, svc: Service, window: Window = DEFAULT_WINDOW) -> Response:
    """The process's `mine --format json` document of the window's cases (those its figures
    count), with conformance to its reference model when the config names one."""
    return Response(svc.document(name, window), media_type="application/json")


@router.get("/processes/{name}/map.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}},
                       503: {"description": "Too many maps being drawn; see Retry-After"}})
def get_map(name: str, svc: Service, window: Window = DEFAULT_WINDOW,
            view: Literal["frequency", "performance"] = "frequency",
            activities: Annotated[float, Query(gt=0, le=1)] = 1.0,
            paths: Annotated[float, Query(ge=0, le=1)] = 0.2) -> Response:
    """The process map as SVG: frequency or performance view, activity and path thresholds
    (snapped to 5% steps). 503 with Retry-After while the server draws as many maps as it
    may at once (`web.map_renders`) for longer than a request waits (`web.map_wait_s`)."""
    svg = svc.map_svg(name, window, view, activities, paths)
    return Response(svg, media_type="image/svg+xml")


@router.get("/processes/{name}/model.bpmn", response_class=Response,
            responses={200: {"content": {"application/xml": {}}}})
def get_bpmn(name: str, svc: Service, window: Window = DEFAULT_WINDOW) -> Response:
    """The discovered BPMN model, as a download."""
    return Response(svc.bpmn(name, window), media_type="application/xml", headers={
        "Content-Disposition": f'attachment; filename="{_file(name)}.bpmn"'})


@router.get("/processes/{name}/events.xes", response_class=Response,
            responses={200: {"content": {"application/xml": {}}}})
def get_xes(name: str, svc: Service, window: Window = DEFAULT_WINDOW) -> Response:
    """The window's events as an XES log, as a download."""
    return Response(svc.xes(name, window), media_type="application/xml", headers={
        "Content-Disposition": f'attachment; filename="{_file(name)}.xes"'})


@router.get("/processes/{name}/stuck", response_model=list[StuckOut])
def get_stuck(name: str, svc: Service, window: Window = DEFAULT_WINDOW) -> list[StuckOut]:
    """Open cases idle far longer than normal at their step, longest first: those the firing
    stuck alerts list, as of the last alert round (every open case, whatever the window)."""
    return [StuckOut(case_id=c.case_id, step=c.step, idle_days=c.idle_days, since=c.since)
            for c in svc.stuck(name)]


@router.get("/alerts")
def list_alerts(svc: Service, process: str | None = None,
                status: Literal["pending", "firing", "resolved", "confirmed"] | None = None
                ) -> list[dict[str, JsonValue]]:
    """Every known alert (open first), with its evidence and its acknowledgement."""
    return [a.to_json() for a in svc.alerts(process)
            if status is None or a.status.value == status]


@router.get("/alerts/{key:path}/history")
def alert_history(key: str, svc: Service) -> list[dict[str, JsonValue]]:
    """What happened to one alert (fired, repeated, resolved...), newest first."""
    svc.alert(key)
    return [{"change": c.change.value, "at": c.at.isoformat(), "severity": c.alert.severity.value,
             "summary": c.alert.summary, "fix_owner": c.alert.fix_owner, "action": c.alert.action,
             "note": {"by": c.note.by, "text": c.note.text} if c.note is not None else None,
             "detail": c.detail or None} for c in svc.history(key)]


ActDays = Annotated[float | None, Query(gt=0, le=36500, description=(
    "count the episodes that fired in this many days before now (default: the configured"
    " [alerts] time_to_act_window, 90 days)"))]


@router.get("/time-to-act")
def time_to_act(svc: Service, days: ActDays = None) -> dict[str, JsonValue]:
    """Time to acknowledge, resolve and confirm, in business hours (median, p90, counts),
    recurrences and alerts never acknowledged: overall, per process and per owner, of the
    episodes that fired in the window ``window`` says (its days and since when)."""
    return svc.time_to_act(days=days).to_json()


@router.get("/processes/{name}/time-to-act")
def process_time_to_act(name: str, svc: Service, days: ActDays = None) -> dict[str, JsonValue]:
    """Time to act on one process's alerts, overall and per owner (as ``/api/time-to-act``)."""
    return svc.time_to_act(name, days=days).to_json()


@router.get("/alerts/{key:path}")
def get_alert(key: str, svc: Service) -> dict[str, JsonValue]:
    """One alert (as listed) and its timeline, oldest first: each change with the alert as it
    was stored then (its evidence, who acknowledged...). Declared after ``.../history``, which
    it would otherwise take."""
    alert = svc.alert(key)
    steps = sorted(svc.history(alert.key, limit=500), key=lambda c: c.at)
    return {"alert": alert.to_json(), "timeline": [
        {"change": c.change.value, "at": c.at.isoformat(), "status": c.alert.status.value,
         "severity": c.alert.severity.value, "summary": c.alert.summary,
         "alert": c.alert.to_json()} for c in steps]}


@router.get("/silences", response_model=list[SilenceOut])
def list_silences(svc: Service) -> list[SilenceOut]:
    """The silences in force."""
    return [SilenceOut(id=s.id, key=s.key, rule=s.rule, process=s.process, until=s.until,
                       by=s.by, why=s.why, created_at=s.created_at) for s in svc.silences()]


@router.post("/processes/{name}/review", response_model=ReviewOut, status_code=201)
def post_review(name: str, body: ReviewIn, svc: Service, who: Writer) -> ReviewOut:
    """Record that the authenticated user reviewed the process definition."""
    r = svc.review(name, who.name, body.note)
    return ReviewOut(process=r.process, by=r.by, at=r.at, note=r.note)


@router.post("/alerts/{key:path}/ack", response_model=AckOut, status_code=201)
def post_ack(key: str, body: AckIn, svc: Service, who: Writer) -> AckOut:
    """Acknowledge an alert: someone is on it (it is no longer escalated or repeated)."""
    a = svc.acknowledge(key, who.name, body.note, owner=body.owner, action=body.action)
    return AckOut(key=a.key, by=a.by, at=a.at, note=a.note, owner=a.fix_owner, action=a.action)


@router.post("/alerts/{key:path}/note", response_model=NoteOut, status_code=201)
def post_note(key: str, body: NoteIn, svc: Service, who: Writer) -> NoteOut:
    """Add a note to an open alert (what was done, what is next): kept in its history and
    sent once to its channels, when it was announced and is not silenced."""
    n = svc.add_note(key, who.name, body.text)
    return NoteOut(key=n.key, by=n.by, at=n.at, text=n.text)


@router.post("/alerts/{key:path}/accept", response_model=AcceptOut, status_code=201)
def post_accept(key: str, body: AcceptIn, svc: Service, who: Writer) -> AcceptOut:
    """Accept an open alert's new level as normal: it resolves at the next evaluation (sent once,
    as ``accepted``) and that level is its baseline from then on."""
    a = svc.accept(key, who.name, body.why)
    return AcceptOut(key=a.key, by=a.by, at=a.at, why=a.why)


@router.post("/alerts/{key:path}/silence", response_model=SilenceOut, status_code=201)
def post_silence(key: str, body: SilenceIn, svc: Service, who: Writer) -> SilenceOut:
    """Silence an alert until a time, with a reason."""
    s = svc.silence(key, who.name, body.why, body.until)
    return SilenceOut(id=s.id, key=s.key, rule=s.rule, process=s.process, until=s.until,
                      by=s.by, why=s.why, created_at=s.created_at)


def _file(name: str) -> str:
    """A safe download file name for a process name (event data)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return cleaned[:80] or "process"
