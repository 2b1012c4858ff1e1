"""``/healthz`` (the process is up), ``/readyz`` (it can serve) and ``/metrics`` (Prometheus).

All three are open without credentials even when reading needs a token (``app.OPEN_PATHS``):
they are what probes and scrapers call, and they carry no event data beyond process names.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from backlight.metrics import Metrics
from backlight.web.service import WebService
from schemas.errors import BacklightError

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready; `reason` says why"}})
def readyz(request: Request) -> JSONResponse:
    """Ready (200) when the store answers and, if a consumer runs in this process (``serve
    --consume``), it has reported its lag; then ``lag`` is the messages it has not consumed
    yet over all partitions. Not ready (503, with ``reason``) when the store cannot be read,
    when the in-process consumer has not reported its lag yet, or when it failed."""
    svc: WebService = request.app.state.service
    metrics: Metrics = request.app.state.metrics
    try:
        seq = svc.store.last_seq()
    except BacklightError as exc:
        return _unready(f"the store cannot be read: {exc}", store=str(exc))
    body: dict[str, Any] = {"status": "ready", "store": "ok", "last_seq": seq,
                            "consumer": "none" if not metrics.consuming
                            else "running" if metrics.consumer_running else "stopped"}
    if metrics.consumer_error is not None:
        return _unready(f"the consumer stopped: {metrics.consumer_error}", consumer="failed")
    lag = metrics.lag_total
    if metrics.consuming and lag is None:
        return _unready("the consumer has not reported its lag yet", consumer="starting")
    if lag is not None:
        body["lag"] = lag
    return JSONResponse(body)


def _unready(reason: str, **details: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason, **details}, status_code=503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text exposition format"}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: events consumed, stored and duplicate per topic, dead letters per
    topic and reason, consumer lag per partition and batch latency (when a consumer runs in
    this process); events per process, alerts by status and severity, alerts fired,
    notifications sent and failed per channel and the outbox depth (read from the store)."""
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
