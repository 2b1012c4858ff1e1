"""A consumer's own small HTTP port: ``/metrics``, ``/healthz`` and ``/readyz`` only.

``backlight consume --metrics-port P`` serves this beside the poll loop, on a thread (uvicorn
with a three-route Starlette app; no pages, no API, no credentials: nothing here carries event
data beyond topic and process names). ``/metrics`` is the consumer's ``Metrics`` (lag per
partition, consumed/stored/duplicate counters, dead letters by reason, batch latency, last
commit time) plus ``backlight_store_up`` and the store read latency, probed at each scrape;
``/readyz`` follows the rule in ``backlight.web.health``.

The store is probed through a store of its own (opened on first use, again after a failed
open), on one worker thread, and a probe that does not answer within ``PROBE_TIMEOUT_S``
counts as the store unreachable; a probe still in flight is shared, never stacked.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backlight.metrics import Metrics
from backlight.web.health import readiness
from backlight.web.server import ServeError, address, listen
from ingest.errors import StoreError
from schemas.errors import BacklightError
from storage import EventStore, mask_url, open_store

PROBE_TIMEOUT_S = 5.0


class StoreProbe:
    """The quick read of the store behind readiness: ``last_seq`` on a worker thread of its
    own, bounded by ``timeout_s``; raises ``StoreError`` when the store cannot answer."""

    def __init__(self, url: str, timeout_s: float = PROBE_TIMEOUT_S,
                 opener: Callable[[str], EventStore] = open_store) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._open = opener
        self._store: EventStore | None = None
        self._lock = threading.Lock()
        self._pending: Future[int] | None = None
        self._requests: queue.SimpleQueue[Future[int] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="backlight-store-probe",
                                        daemon=True)
        self._worker.start()

    def last_seq(self) -> int:
        with self._lock:
            if self._pending is None or self._pending.done():
                self._pending = Future()
                self._requests.put(self._pending)
            pending = self._pending
        try:
            return pending.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise StoreError(f"the store ({mask_url(self.url)}) did not answer within "
                             f"{self.timeout_s:g}s") from None

    def _work(self) -> None:
        while (request := self._requests.get()) is not None:
            try:
                if self._store is None:
                    self._store = self._open(self.url)
                request.set_result(self._store.last_seq())
            except Exception as exc:  # handed to the waiting probe
                request.set_exception(exc if isinstance(exc, BacklightError)
                                      else StoreError(f"{type(exc).__name__}: {exc}"))

    def close(self) -> None:
        """Stop the worker (without waiting for a read in flight) and close the store."""
        self._requests.put(None)
        self._worker.join(1.0)
        if not self._worker.is_alive() and self._store is not None:
            self._store.close()


def create_ops_app(metrics: Metrics, probe: StoreProbe,
                   stopping: Callable[[], bool] = lambda: False) -> Starlette:
    """The three routes over ``metrics`` (the consumer reports to it) and ``probe``."""
    store_up = Gauge("backlight_store_up", "1 when the store answered this scrape's quick read",
                     registry=metrics.registry)

    def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    def readyz(_request: Request) -> JSONResponse:
        code, body = readiness(metrics, probe.last_seq, stopping())
        return JSONResponse(body, status_code=code)

    def scrape(_request: Request) -> Response:
        started = time.perf_counter()
        try:
            probe.last_seq()
        except BacklightError:
            store_up.set(0)
        else:
            metrics.observe_store_read(time.perf_counter() - started)
            store_up.set(1)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz),
                             Route("/metrics", scrape)])


@contextmanager
def serving(store_url: str, metrics: Metrics, host: str = "127.0.0.1", port: int = 0,
            stopping: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """The consumer's ops port served on a daemon thread; yields its base URL, and stops
    the server (and closes its probe's store) on exit."""
    sock = listen(host, port, "--metrics-port")
    probe = StoreProbe(store_url)
    config = uvicorn.Config(create_ops_app(metrics, probe, stopping), log_level="warning",
                            access_log=False, server_header=False, proxy_headers=False,
                            timeout_graceful_shutdown=2, lifespan="off")
    server = uvicorn.Server(config)  # on a thread it leaves the signals to the main thread
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="backlight-ops", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise ServeError(f"the metrics server on {address(sock)} stopped while starting")
            time.sleep(0.02)
        yield address(sock)
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
        probe.close()
