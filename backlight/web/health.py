"""``/healthz`` (the process is up) and ``/readyz`` (it can serve: the store answers)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from backlight.web.service import WebService
from schemas.errors import BacklightError

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers; 503 with the reason otherwise."""
    svc: WebService = request.app.state.service
    try:
        seq = svc.store.last_seq()
    except BacklightError as exc:
        return JSONResponse({"status": "unavailable", "store": str(exc)}, status_code=503)
    return JSONResponse({"status": "ready", "store": "ok", "last_seq": seq})
