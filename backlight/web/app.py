"""The FastAPI application behind ``backlight serve``: pages, the JSON API, health and metrics.

Every request passes one middleware first. It resolves who is asking (``auth.Authenticator``)
and refuses before any routing or lookup: a write without credentials gets 401, a write with
read-only credentials 403, a cookie- or proxy-authenticated API write without its CSRF header
403; with ``web.read = "token"`` so does a read (pages redirect to the sign-in form). It then
sets the security headers on every response: a Content-Security-Policy that allows only the
app's own scripts and styles (no inline script or style at all), no framing, no sniffing, no
referrer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from backlight import strict_json
from backlight.config import Settings
from backlight.metrics import Metrics
from backlight.time_to_act import TimeToActCollector
from backlight.web import api, figures_api, pages
from backlight.web.auth import CSRF_HEADER, Authenticator
from backlight.web.health import router as health_router
from backlight.web.limits import AttemptLimiter, RenderBusy, RenderGate
from backlight.web.service import NotFound, WebService
from mining.errors import MiningError
from schemas.errors import BacklightError

CSP: Final = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
OPEN_PATHS: Final = ("/healthz", "/readyz", "/metrics", "/static/", "/login")
"""Reachable without credentials even when reading needs a token."""
SAFE_METHODS: Final = ("GET", "HEAD", "OPTIONS")


class StrictJSONResponse(JSONResponse):
    """JSON every parser reads: a non-finite number anywhere in the content is sent as null
    (Starlette's own would fail the request with a 500)."""

    def render(self, content: object) -> bytes:
        return strict_json.dumps(content, ensure_ascii=False, indent=None,
                                 separators=(",", ":")).encode("utf-8")


def create_app(settings: Settings, service: WebService | None = None,
               metrics: Metrics | None = None) -> FastAPI:
    """The app over the store ``settings`` names (or over ``service``, already opened);
    ``/metrics`` renders ``metrics`` (the in-process consumer's, if one runs) plus the store's
    figures."""
    auth = Authenticator(settings.web)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if service is None:
            app.state.service.close()

    # No /docs or /redoc: FastAPI serves them with scripts from a CDN, which a closed network
    # cannot reach and our Content-Security-Policy refuses; /openapi.json documents the API.
    app = FastAPI(title="Backlight", version="0.1.0", lifespan=lifespan, docs_url=None,
                  redoc_url=None, default_response_class=StrictJSONResponse,
                  description="Process mining for back-office operations: maps, variants, "
                              "hand-offs, stuck cases and alerts of each process.")
    app.state.settings = settings
    app.state.auth = auth
    app.state.service = service or WebService(settings)
    app.state.metrics = metrics or Metrics()
    app.state.metrics.watch_store(settings.store.url, app.state.service.store)
    app.state.metrics.watch_time_to_act(
        TimeToActCollector(app.state.service.act))
    app.state.login_limiter = AttemptLimiter(settings.web.login_failures_per_minute)
    gate: RenderGate = app.state.service.maps.gate
    gate.on_render = app.state.metrics.map_renders.inc
    gate.on_refused = app.state.metrics.map_busy.inc

    @app.middleware("http")
    async def guard(request: Request,
                    call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        refused = _refusal(request, auth)
        response = refused or await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1e3:.1f}"
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(MiningError)
    async def cannot_mine(request: Request, exc: MiningError) -> Response:
        return _error(request, 422, str(exc))

    @app.exception_handler(RenderBusy)
    async def busy(request: Request, exc: RenderBusy) -> Response:
        return _json(503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(BacklightError)
    async def refused(request: Request, exc: BacklightError) -> Response:
        return _error(request, 400, str(exc))

    static = resources.files("backlight.web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.include_router(health_router)
    app.include_router(api.router)
    app.include_router(figures_api.router)
    app.include_router(pages.router)
    return app


def _refusal(request: Request, auth: Authenticator) -> Response | None:
    """The response refusing this request, or None to let it through (with
    ``request.state.principal`` set: the user, or None for an anonymous read)."""
    principal = auth.principal(request)
    request.state.principal = principal
    path = request.url.path
    is_api = path.startswith("/api/")
    if request.method in SAFE_METHODS:
        if principal is None and not auth.read_open and not path.startswith(OPEN_PATHS) \
                and path != "/openapi.json":
            if is_api or path.startswith("/docs"):
                return _json(401, "sign in: send Authorization: Bearer <token>",
                             {"WWW-Authenticate": "Bearer"})
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return None
    if path == "/login" or path == "/logout":
        return None  # the form checks its CSRF token; signing in needs no credentials
    if principal is None:
        return _json(401, "writing needs an authenticated user: Authorization: Bearer <token>, "
                          "a signed-in session, or the trusted proxy's user header",
                     {"WWW-Authenticate": "Bearer"})
    if not principal.can_write:
        return _json(403, f"{principal.name!r} may read but not write")
    if is_api and principal.needs_csrf and not auth.csrf_ok(request,
                                                            request.headers.get(CSRF_HEADER)):
        return _json(403, "CSRF token missing or wrong: send the page's token as X-CSRF-Token")
    return None


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return StrictJSONResponse({"detail": detail}, status_code=status, headers=headers)


def _error(request: Request, status: int, detail: str) -> Response:
    if request.url.path.startswith("/api/"):
        return _json(status, detail)
    return pages.error_page(request, status, detail)
