"""A chat endpoint for the delivery tests: a real local HTTP server in a thread that records
every request and deduplicates by Idempotency-Key, a fake clock the tests move on, channels of
every platform (their URLs carrying secrets), alerts and evaluations to route, and the
fixtures (an outbox in a fresh store of each backend, the real httpx transport)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pg import fresh_database

from alerts.channels import (
    ChannelSettings,
    by_name,
    payload_for,
)
from alerts.delivery import HttpxTransport
from alerts.routing import route
from schemas.alerts import Alert, AlertChange, Change, Notification, Severity, Status
from storage import OutboxQueue, open_outbox

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HANG_S = 0.6
HANG_TIMEOUT_S = 0.25
"""The timeout of a test that wants hangs (answered after HANG_S) to time out."""
TIMEOUT_S = 10.0
"""Every other test's timeout: generous, so a loaded machine never turns an answer into a
timeout (CI once saw a 0.25 s timeout expire on a plain 200 under load)."""
SECRETS = ("SLACKSECRET", "TEAMSSECRET", "SIGSECRET", "GTOKEN", "MMSECRET", "HOOKTOKEN")


class Clock:
    """A controllable clock: the test moves time on, so minutes of outage take no wall time."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Request:
    """One request as the receiver saw it."""

    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: datetime
    action: str
    """What was served: ok, fail (500), hang (too late), throttle (429), bad (400)."""
    wall: float
    """time.monotonic() at arrival."""
    outcome: str = ""
    """For a processed request: accepted, or duplicate (an idempotency key seen before)."""

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")


Behaviour = Callable[[int, datetime, str], str]
"""(request number, fake time, path) -> ok | fail | hang | throttle | bad."""


class Receiver:
    """A chat endpoint on 127.0.0.1: records every request, deduplicates by Idempotency-Key."""

    def __init__(self, clock: Clock, behaviour: Behaviour) -> None:
        self.clock, self.behaviour = clock, behaviour
        self.requests: list[Request] = []
        self.accepted: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            """Hands every POST to the receiver; logs nothing."""

            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        body = h.rfile.read(int(h.headers.get("Content-Length", "0")))
        parts = urlsplit(h.path)
        with self.lock:
            action = self.behaviour(len(self.requests), self.clock(), parts.path)
            req = Request(parts.path, parts.query, {k.lower(): v for k, v in h.headers.items()},
                          body, self.clock(), action, arrived)
            self.requests.append(req)
            if action in ("ok", "hang"):  # a hang: processed, but the answer comes too late
                req.outcome = "duplicate" if req.key in self.accepted else "accepted"
                if req.outcome == "accepted":
                    self.accepted.append(req.key)
        try:
            if action == "hang":
                time.sleep(HANG_S)
            status = {"ok": 200, "hang": 200, "fail": 500, "throttle": 429, "bad": 400}[action]
            h.send_response(status)
            if action == "throttle":
                h.send_header("Retry-After", "20")
            h.send_header("Content-Length", "2")
            h.end_headers()
            h.wfile.write(b"ok")
        except OSError:
            pass  # the client gave up (timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    """A fake clock starting at T0 + 3 h."""
    return Clock(T0 + timedelta(hours=3))


@pytest.fixture(name="url", params=["sqlite", "postgresql"])
def url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL of each backend (a new SQLite file; a new PostgreSQL database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture(name="outbox")
def outbox_fixture(url: str) -> Iterator[OutboxQueue]:
    """An outbox in a fresh store of each backend."""
    box = open_outbox(url)
    yield box
    box.close()


@pytest.fixture(name="transport")
def transport_fixture() -> Iterator[HttpxTransport]:
    """The real httpx transport."""
    t = HttpxTransport()
    yield t
    t.close()


def start(clock: Clock, behaviour: Behaviour = lambda n, at, path: "ok") -> Receiver:
    """A receiver with the given behaviour."""
    return Receiver(clock, behaviour)


def all_channels(base: str, timeout_s: float = TIMEOUT_S) -> dict[str, ChannelSettings]:
    """One channel of each HTTP type, each URL carrying a secret, on the receiver."""
    specs = [
        {"name": "slack", "type": "slack", "url": f"{base}/slack/services/T0/B0/SLACKSECRET"},
        {"name": "teams", "type": "teams",
         "url": f"{base}/teams/workflows/TEAMSSECRET/run?api-version=1&sig=SIGSECRET"},
        {"name": "gchat", "type": "googlechat",
         "url": f"{base}/chat/v1/spaces/AAA/messages?key=k&token=GTOKEN"},
        {"name": "mm", "type": "mattermost", "url": f"{base}/mm/hooks/MMSECRET"},
        {"name": "hook", "type": "webhook", "url": f"{base}/hook",
         "headers": {"Authorization": "Bearer HOOKTOKEN"}},
    ]
    return by_name([ChannelSettings.model_validate({**s, "timeout_s": timeout_s}) for s in specs])


def alert(subject: str, process: str = "claims", owner: str = "ana", **state: Any) -> Alert:
    """A firing bottleneck alert."""
    return Alert(key=f"bottleneck/{process}/{subject}", rule="bottleneck", process=process,
                 subject=subject, severity=Severity.WARNING, status=Status.FIRING,
                 summary=f"wait before {subject}: 6 business days", evidence={"median_days": 6.0},
                 segment={}, since=date(2026, 10, 19), cases=("c-1",), owner=owner,
                 first_seen=T0, last_seen=T0, fired_at=T0, **state)


def evaluations() -> list[list[AlertChange]]:
    """Three evaluations' changes: A fires, resolves and fires again; B repeats and escalates."""
    a, b, c = alert("A"), alert("B"), alert("C", process="payments", owner="bo")
    return [
        [AlertChange(Change.FIRING, a, T0), AlertChange(Change.FIRING, b, T0),
         AlertChange(Change.FIRING, c, T0)],
        [AlertChange(Change.RESOLVED, a, T0 + timedelta(hours=1)),
         AlertChange(Change.REPEAT, b, T0 + timedelta(hours=1))],
        [AlertChange(Change.FIRING, a, T0 + timedelta(hours=2)),
         AlertChange(Change.ESCALATED, b, T0 + timedelta(hours=2)),
         AlertChange(Change.RESOLVED, c, T0 + timedelta(hours=2))],
    ]


def enqueue(outbox: OutboxQueue, channels: dict[str, ChannelSettings], changes: list[AlertChange],
            now: datetime) -> list[Notification]:
    """Route one evaluation's changes and put them in the outbox."""
    notes = route(changes, [], channels, now)
    outbox.enqueue(notes, payload_for(channels), now)
    return notes


MAP = "https://backlight.example/maps/claims?view=performance&x=1"


def make_alert(i: int = 0, *, subject: str = "Assessment", summary: str | None = None,
               severity: Severity = Severity.WARNING, owner: str | None = "claims-team",
               url: str | None = MAP, evidence: dict[str, Any] | None = None,
               segment: dict[str, str] | None = None, **state: Any) -> Alert:
    """A firing bottleneck alert on claims."""
    segment = {"region": "east"} if segment is None else segment
    return Alert(
        key=f"bottleneck/claims/{subject}-{i}", rule="bottleneck", process="claims",
        subject=f"{subject}-{i}", severity=severity, status=state.pop("status", Status.FIRING),
        summary=summary or f"wait before {subject}-{i}: 6.1 business days, baseline 0.8",
        evidence=evidence if evidence is not None else {
            "recent_median_days": 6.1, "baseline_median_days": 0.8, "cases": 42,
            "window": "2026-10-19..2026-11-02"},
        segment=segment, since=date(2026, 10, 19), cases=("c-1", "c-2", "c-3", "c-4", "c-5", "c-6"),
        owner=owner, first_seen=T0 - timedelta(days=3), last_seen=T0,
        fired_at=state.pop("fired_at", T0 - timedelta(days=1)), url=url, **state)


def make_notification(alerts: list[Alert], change: Change = Change.FIRING,
                      owner: str | None = "claims-team") -> Notification:
    """One notification announcing the same change for every alert."""
    return Notification(id="f" * 64, channel="chat", process="claims", owner=owner,
                        changes=tuple(AlertChange(change, a, T0) for a in alerts), created_at=T0)
