"""Server-rendered pages (Jinja2, autoescaped): the overview, a process, the alerts, sign-in.

Every event-derived string reaches the HTML through autoescaping; the only markup built in
Python is the charts of ``backlight.web.charts`` (numbers only). Forms post with a CSRF token
(an HMAC of the ``backlight_csrf`` nonce cookie, set on the first page a browser reads) and
act as the signed-in user, through the same functions as the CLI.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
import markupsafe
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from alerts.episode_series import has_series
from alerts.lifecycle import episode_ack, matching_silence
from alerts.rules import RULES
from backlight.web import forms
from backlight.web.alert_view import timeline
from backlight.web.auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Authenticator,
    Principal,
    client_address,
    is_https,
)
from backlight.web.charts import episode_chart, share_bar, sparkline
from backlight.web.forms import FormError, q
from backlight.web.limits import AttemptLimiter, quantise
from backlight.web.service import ProcessRow, WebService
from backlight.web.windows import DEFAULT_WINDOW, WINDOWS
from mining.rework import rework_share
from schemas.alerts import Acceptance, Acknowledgement, Alert, Severity, Silence, Status
from schemas.printable import printable

router = APIRouter(include_in_schema=False)
log = structlog.stdlib.get_logger("backlight.web.auth")
VIEWS = ("frequency", "performance")
TOP_VARIANTS = 15


_CONTROL_IN_MARKUP = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""What ``printable`` escapes, less the tab and line breaks that markup is laid out with."""


def _shown(value: object) -> object:
    """Every ``{{ value }}`` of a page: control characters as visible escapes (autoescape leaves
    them raw), before the HTML escaping. Markup (already-safe HTML, e.g. from a filter that
    embeds event text) gets the same but keeps its layout: an escape such as ``\\x1b`` cannot
    make a tag."""
    if isinstance(value, markupsafe.Markup):
        if not _CONTROL_IN_MARKUP.search(value):
            return value
        return markupsafe.Markup(  # noqa: S704
            _CONTROL_IN_MARKUP.sub(lambda m: printable(m.group()), str(value)))
    return printable(value) if isinstance(value, str) else value


def _environment() -> jinja2.Environment:
    folder = resources.files("backlight.web").joinpath("templates")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, finalize=_shown)
    env.filters.update(q=q, duration=forms.duration, percent=forms.percent, when=forms.when,
                       bar=share_bar)
    return env


TEMPLATES = Jinja2Templates(env=_environment())


def _service(request: Request) -> WebService:
    svc: WebService = request.app.state.service
    return svc


def _auth(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def _principal(request: Request) -> Principal | None:
    return getattr(request.state, "principal", None)


def render(request: Request, template: str, context: dict[str, Any],
           status: int = 200) -> Response:
    """A page, with the CSRF token of this browser's nonce (a fresh nonce cookie if it had
    none) and who is signed in."""
    nonce = request.cookies.get(CSRF_COOKIE)
    fresh = None
    if not nonce:
        nonce = fresh = Authenticator.new_nonce()
    principal = _principal(request)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    done = forms.DONE_MESSAGES.get(request.query_params.get("done", ""))
    response = TEMPLATES.TemplateResponse(request, template, {
        **context, "principal": principal, "csrf_field": CSRF_FIELD,
        "csrf": _auth(request).csrf_token(nonce), "here": here, "done": done,
        "can_write": principal is not None and principal.can_write,
        "login_url": "/login?" + urlencode({"next": here}),
    }, status_code=status)
    if fresh:
        response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="strict", path="/",
                            secure=_https(request))
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: Request, status: int, detail: str) -> Response:
    return render(request, "error.html", {"status": status, "detail": detail}, status)


def _window(request: Request) -> str:
    window = request.query_params.get("window", DEFAULT_WINDOW)
    return window if window in WINDOWS else DEFAULT_WINDOW


def _window_links(path: str, current: str, **keep: str) -> list[dict[str, Any]]:
    return [{"key": key, "label": label, "current": key == current,
             "href": f"{path}?{urlencode({**keep, 'window': key})}"}
            for key, (label, _span) in WINDOWS.items()]


# --- overview -------------------------------------------------------------------------------

def _row(row: ProcessRow, today: datetime) -> dict[str, Any]:
    s, g = row.figures, row.governance
    if s is None or g is None:
        return {"name": row.name, "error": row.error or "no figures", "alerts": sorted(
            row.open_alerts.items(), key=lambda kv: -Severity(kv[0]).rank)}
    medians = [w.median_seconds for w in s.weekly]
    label = ("weekly median throughput: " + ", ".join(forms.duration(m) for m in medians)
             if medians else "no closed cases")
    return {
        "name": s.process, "cases": s.cases, "open_cases": s.open_cases, "events": s.events,
        "out_of_range": s.out_of_range, "error": None,
        "median": forms.duration(s.median_case_s), "spark": sparkline(medians, label),
        "weeks": len(medians),
        "trend": _trend(medians), "sla": g.sla, "sla_met": s.sla_met,
        "rework": s.rework_share, "alerts": sorted(row.open_alerts.items(),
                                                   key=lambda kv: -Severity(kv[0]).rank),
        "owners": g.owners, "owner": g.owner, "team": g.team,
        "ownerless": g.owner is None, "configured": g.configured,
        "last_reviewed": g.last_reviewed, "reviewed_by": g.reviewed_by, "due": g.review_due,
        "stale": g.stale(today.date()),
    }


def _trend(medians: list[float]) -> str:
    if len(medians) < 2 or medians[-2] <= 0:
        return ""
    change = medians[-1] / medians[-2] - 1
    arrow = "▲" if change > 0.005 else "▼" if change < -0.005 else "="
    return f"{arrow} {abs(change) * 100:.0f}%"


@router.get("/")
def overview(request: Request) -> Response:
    window = _window(request)
    today = datetime.now(UTC)
    svc = _service(request)
    rows = [_row(r, today) for r in svc.overview(window)]
    return render(request, "overview.html", {
        "rows": rows, "window": window, "window_label": WINDOWS[window][0],
        "unfolded": svc.unfolded(), "act": svc.time_to_act(),
        "windows": _window_links("/", window)})


# --- one process ----------------------------------------------------------------------------

@dataclass(frozen=True)
class MapControls:
    view: str
    activities: float
    paths: float

    @classmethod
    def of(cls, request: Request) -> MapControls:
        p = request.query_params
        view = p.get("view", "frequency")
        return cls(view if view in VIEWS else "frequency",
                   _fraction(p.get("activities"), 1.0, 0.05), _fraction(p.get("paths"), 0.2, 0.0))

    def params(self) -> dict[str, str]:
        return {"view": self.view, "activities": f"{self.activities:g}",
                "paths": f"{self.paths:g}"}


def _fraction(text: str | None, default: float, low: float) -> float:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        return default
    return quantise(value, low) if math.isfinite(value) else default  # the API's 5% steps


def _alert_views(svc: WebService, alerts: list[Alert], history: bool) -> list[dict[str, Any]]:
    acks = svc.acknowledgements()
    silences = svc.silences()
    accepted = svc.acceptances()
    with_baseline = {rule.name for rule in RULES if rule.baseline}
    return [{**_alert_view(svc, a, acks, silences, history), "accepted": _accepted(a, accepted),
             "acceptable": a.rule in with_baseline} for a in alerts]


def _accepted(a: Alert, acceptances: dict[str, Acceptance]) -> Acceptance | None:
    """The acceptance of the alert's episode: applied (resolved as accepted) or given in the
    open episode and applied at the next evaluation."""
    if a.accepted_at is not None and a.accepted_by is not None:
        given = acceptances.get(a.key)
        return given if given is not None and given.at == a.accepted_at else Acceptance(
            a.key, a.accepted_by, a.accepted_at, "")
    given = acceptances.get(a.key)
    open_now = a.status in (Status.FIRING, Status.PENDING)
    return given if open_now and given is not None and given.at >= a.first_seen else None


def _alert_view(svc: WebService, a: Alert, acks: dict[str, Acknowledgement],
                silences: list[Silence], history: bool) -> dict[str, Any]:
    is_open = a.status in (Status.FIRING, Status.PENDING)
    ack = episode_ack(a, acks)
    silence = matching_silence(a, silences)
    state = (a.status.value if not is_open else "silenced" if silence or a.silenced
             else "acknowledged" if ack or a.acknowledged else "open")
    return {
        "alert": a, "key_q": q(a.key), "state": state, "open": is_open, "ack": ack,
        "silence": silence, "evidence": forms.evidence_fields(a.evidence),
        "history": svc.history(a.key, limit=20) if history else [],
    }


@router.get("/processes/{name}")
def process_page(name: str, request: Request) -> Response:
    svc = _service(request)
    window = _window(request)
    line = svc.line(name, window)
    figures = svc.figures(name, window)  # type: ignore[arg-type]  # a key of WINDOWS
    definition = svc.definition(name)
    governance = svc.governance(definition)
    controls = MapControls.of(request)
    base = f"/processes/{q(name)}"
    api = f"/api/processes/{q(name)}"
    cases = max(figures.cases, 1)
    ends_from, kept = svc.end_activities(definition)
    return render(request, "process.html", {
        "ends": {"from": ends_from, "kept": kept,
                 "activities": definition.end_activities or (kept.activities if kept else ())},
        "name": name, "window": window, "window_label": WINDOWS[window][0],
        "windows": _window_links(base, window, **controls.params()),
        "line": line, "completed_from": figures.completed_from, "unfolded": svc.unfolded(),
        "gov": governance, "stale": governance.stale(datetime.now(UTC).date()),
        "controls": controls, "views": VIEWS, "base": base, "map_base": f"{api}/map.svg",
        "map_src": f"{api}/map.svg?{urlencode({'window': window, **controls.params()})}",
        "bpmn": f"{api}/model.bpmn?{urlencode({'window': window})}",
        "xes": f"{api}/events.xes?{urlencode({'window': window})}",
        "variants": [{"activities": v.activities, "count": v.count, "share": v.count / cases}
                     for v in figures.variants[:TOP_VARIANTS]],
        "variant_count": figures.variant_count,
        "handoffs": figures.handoffs,
        "rework": [{"activity": r.activity, "cases": r.cases,
                    "share": rework_share(r.cases, figures.cases)} for r in figures.rework],
        "loops": figures.loops, "conformance": svc.conformance(name, window),
        "stuck": svc.stuck(name), "alerts": _alert_views(svc, svc.alerts(name), history=True),
        "reviews": svc.reviews(name)[:10], "until": forms.default_until(),
        "act": svc.time_to_act(name),
        "spark": sparkline([w.median_seconds for w in line.weekly], "weekly median throughput"),
    })


# --- alerts ---------------------------------------------------------------------------------

@router.get("/alerts")
def alerts_page(request: Request) -> Response:
    svc = _service(request)
    views = _alert_views(svc, svc.alerts(), history=True)
    groups = [(state, title, [v for v in views if v["state"] == state]) for state, title in (
        ("open", "Open"), ("acknowledged", "Acknowledged"), ("silenced", "Silenced"),
        ("resolved", "Resolved"), ("confirmed", "Confirmed resolved"))]
    return render(request, "alerts.html", {"groups": groups, "silences": svc.silences(),
                                           "until": forms.default_until()})


@router.get("/alerts/{key:path}")
def alert_page(key: str, request: Request) -> Response:
    """One alert: its card (and actions), the figure around its episode, its timeline with
    the evidence at each step, and the cases it names. The POST routes under a key
    (``/alerts/{key}/ack`` ...) differ in method, so they still match first."""
    svc = _service(request)
    alert = svc.alert(key)
    silences = svc.silences()
    view = _alert_view(svc, alert, svc.acknowledgements(), silences, history=False)
    steps = timeline(svc.history(alert.key, limit=500), view["ack"], svc.state.silences())
    series = svc.episode(alert)
    return render(request, "alert.html", {
        "v": view, "steps": steps, "series": series, "series_missing": has_series(alert),
        "chart": episode_chart(series) if series is not None else None,
        "until": forms.default_until()})


# --- actions --------------------------------------------------------------------------------

async def _checked_form(request: Request) -> tuple[dict[str, str], Principal] | Response:
    """The posted form when its CSRF token holds and a writer is signed in, else the refusal."""
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    if not _auth(request).csrf_ok(request, form.get(CSRF_FIELD)):
        return error_page(request, 403, "This form has expired or did not come from Backlight "
                                        "(CSRF token missing or wrong). Reload the page and retry.")
    principal = _principal(request)
    if principal is None or not principal.can_write:
        return error_page(request, 403, "Sign in with a token that may write to do this.")
    return form, principal


def _back(form: dict[str, str], default: str, done: str) -> RedirectResponse:
    return RedirectResponse(forms.with_query(forms.safe_next(form.get("back"), default),
                                             done=done), status_code=303)


@router.post("/processes/{name}/review")
async def post_review(name: str, request: Request) -> Response:
    checked = await _checked_form(request)
    if isinstance(checked, Response):
        return checked
    form, who = checked
    try:
        text = forms.note(form.get("note"))
    except FormError as exc:
        return error_page(request, 400, str(exc))
    _service(request).review(name, who.name, text)
    return _back(form, f"/processes/{q(name)}", "reviewed")


@router.post("/alerts/{key:path}/ack")
async def post_ack(key: str, request: Request) -> Response:
    checked = await _checked_form(request)
    if isinstance(checked, Response):
        return checked
    form, who = checked
    try:
        text = forms.note(form.get("note"))
        owner = forms.note(form.get("owner"), "owner") or None
        action = forms.note(form.get("action"), "action")
    except FormError as exc:
        return error_page(request, 400, str(exc))
    _service(request).acknowledge(key, who.name, text, owner=owner, action=action)
    return _back(form, "/alerts", "acknowledged")


@router.post("/alerts/{key:path}/accept")
async def post_accept(key: str, request: Request) -> Response:
    checked = await _checked_form(request)
    if isinstance(checked, Response):
        return checked
    form, who = checked
    try:
        why = forms.note(form.get("why"), "reason", required=True)
    except FormError as exc:
        return error_page(request, 400, str(exc))
    _service(request).accept(key, who.name, why)
    return _back(form, "/alerts", "accepted")


@router.post("/alerts/{key:path}/note")
async def post_note(key: str, request: Request) -> Response:
    checked = await _checked_form(request)
    if isinstance(checked, Response):
        return checked
    form, who = checked
    try:
        text = forms.note(form.get("text"), "text", required=True)
    except FormError as exc:
        return error_page(request, 400, str(exc))
    _service(request).add_note(key, who.name, text)
    return _back(form, "/alerts", "noted")


@router.post("/alerts/{key:path}/silence")
async def post_silence(key: str, request: Request) -> Response:
    checked = await _checked_form(request)
    if isinstance(checked, Response):
        return checked
    form, who = checked
    try:
        until = forms.parse_until(form.get("until"))
        why = forms.note(form.get("why"), "reason", required=True)
    except FormError as exc:
        return error_page(request, 400, str(exc))
    _service(request).silence(key, who.name, why, until)
    return _back(form, "/alerts", "silenced")


# --- signing in -----------------------------------------------------------------------------

@router.get("/login")
def login_form(request: Request) -> Response:
    return render(request, "login.html", {
        "next": forms.safe_next(request.query_params.get("next")), "error": None})


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in with a token; a client (address) with ``web.login_failures_per_minute`` failed
    attempts in the last minute gets 429 and Retry-After, whatever it sends."""
    auth = _auth(request)
    client = client_address(request, auth.web.trusted_proxies)
    limiter: AttemptLimiter = request.app.state.login_limiter
    wait = limiter.attempt(client)
    if wait is not None:
        log.warning(f"sign-in refused from {client!r}: {limiter.limit:d} failed attempts within "
                    "a minute")
        refused = render(request, "login.html", {
            "next": "/", "error": f"Too many failed sign-ins from your address: try again "
                                  f"in {wait} s."}, 429)
        refused.headers["Retry-After"] = str(wait)
        return refused
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    target = forms.safe_next(form.get("next"))
    if not auth.csrf_ok(request, form.get(CSRF_FIELD)):
        log.warning(f"sign-in failed from {client!r}: CSRF token missing or wrong "
                    f"({limiter.failures(client):d} within a minute)")
        return error_page(request, 403, "This sign-in form has expired (CSRF token missing or "
                                        "wrong). Reload the page and retry.")
    token = auth.from_token(form.get("token", "").strip()) if form.get("token") else None
    if token is None:
        log.warning(f"sign-in failed from {client!r}: unknown token "
                    f"({limiter.failures(client):d} within a minute)")
        return render(request, "login.html", {
            "next": target, "error": "That token is not known here."}, 401)
    limiter.succeeded(client)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, auth.session_cookie(token.name), httponly=True,
                        samesite="strict", path="/", secure=_https(request))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Sign out: the session is revoked on the server (its cookie, replayed, is refused)."""
    raw = await request.form()
    submitted = raw.get(CSRF_FIELD)
    auth = _auth(request)
    if not auth.csrf_ok(request, submitted if isinstance(submitted, str) else None):
        return error_page(request, 403, "This form has expired (CSRF token missing or wrong).")
    session = auth.session(request)
    if session is not None:
        auth.revoke(session)
    response = RedirectResponse("/?done=signed-out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_https(request))
    return response


def _https(request: Request) -> bool:
    """Whether cookies must be Secure: the browser reached us over HTTPS (a trusted proxy's
    X-Forwarded-Proto counts)."""
    return is_https(request, _auth(request).web.trusted_proxies)
