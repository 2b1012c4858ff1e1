"""``/healthz`` (the process is up), ``/readyz`` (it can do its work) and ``/metrics``.

All three are open without credentials even when reading needs a token (``app.OPEN_PATHS``):
they are what probes and scrapers call, and they carry no event data beyond process names.
``backlight serve`` has them beside the app; ``backlight consume --metrics-port P`` serves the
same three, alone, for its consumer (``backlight.web.ops``).

The readiness rule (``readiness``), the same on both, checked in this order:

1. shutting down (SIGTERM or SIGINT received): not ready, so no probe counts on a consumer
   that is finishing its batch;
2. the store must answer a quick read (its highest arrival seq) now: not ready while it
   cannot be reached or read (a PostgreSQL server down, a SQLite file or table gone);
3. a consumer in this process must not have failed;
4. once it started, it must have reported its lag per partition at least once ("starting"
   until then: joining the group, or the broker not reachable from the start);
5. while it runs, its last report (a committed batch, or its lag while idle) must be at most
   ``STALE_AFTER_S`` old. A healthy consumer reports at least every second or so (it looks
   its lag up at most every second, busy or idle), and every lag lookup asks the broker for
   the partitions' end offsets, so while the broker is unreachable the lookups fail and the
   reports stop; a store write that hangs stops them too. Ready again with the next report.

A consumer that has returned (``--exit-when-idle``) is not checked for staleness. Ready is 200
with ``lag`` (messages not consumed yet over all partitions, when a consumer reports here);
not ready is 503 with ``reason``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from backlight.metrics import Metrics
from backlight.web.service import WebService
from schemas.errors import BacklightError

STALE_AFTER_S = 10.0
"""Longest silence of a running consumer before it counts as cut off from the broker."""

router = APIRouter(tags=["health"])


def readiness(metrics: Metrics, last_seq: Callable[[], int], stopping: bool = False,
              stale_after_s: float = STALE_AFTER_S) -> tuple[int, dict[str, Any]]:
    """The status code (200 or 503) and body of ``/readyz`` under the rule above;
    ``last_seq`` is the store's quick read (it raises ``BacklightError`` when it cannot)."""
    if stopping:
        return _unready("shutting down: finishing the batch in hand", consumer="stopping")
    started = time.perf_counter()
    try:
        seq = last_seq()
    except BacklightError as exc:
        return _unready(f"the store cannot be read: {exc}", store=str(exc))
    metrics.observe_store_read(time.perf_counter() - started)
    body: dict[str, Any] = {"status": "ready", "store": "ok", "last_seq": seq,
                            "consumer": "none" if not metrics.consuming
                            else "running" if metrics.consumer_running else "stopped"}
    if metrics.consumer_error is not None:
        return _unready(f"the consumer stopped: {metrics.consumer_error}", consumer="failed")
    lag = metrics.lag_total
    if metrics.consuming and lag is None:
        return _unready("the consumer has not reported its lag yet", consumer="starting")
    silent = metrics.seconds_since_report
    if metrics.consumer_running and silent is not None and silent > stale_after_s:
        return _unready(f"no report from the consumer for {silent:.0f}s: the broker does not "
                        "answer its lag lookups (unreachable?), or its batch is stuck",
                        consumer="stalled")
    if lag is not None:
        body["lag"] = lag
    return 200, body


def _unready(reason: str, **details: str) -> tuple[int, dict[str, Any]]:
    return 503, {"status": "unavailable", "reason": reason, **details}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready; `reason` says why"}})
def readyz(request: Request) -> JSONResponse:
    """Ready (200) when the store answers and, if a consumer runs in this process (``serve
    --consume``), it has reported its lag and keeps reporting (at most ``STALE_AFTER_S``
    apart); then ``lag`` is the messages it has not consumed yet over all partitions. Not
    ready (503, with ``reason``) when the store cannot be read, when the in-process consumer
    has not reported its lag yet, has gone silent (the broker unreachable) or failed."""
    svc: WebService = request.app.state.service
    code, body = readiness(request.app.state.metrics, svc.store.last_seq)
    return JSONResponse(body, status_code=code)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text exposition format"}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: events consumed, stored and duplicate per topic, dead letters per
    topic and reason, consumer lag per partition, batch latency and the last commit time
    (when a consumer runs in this process); events per process, alerts by status and
    severity, alerts fired, notifications sent and failed per channel and the outbox depth
    (read from the store)."""
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
