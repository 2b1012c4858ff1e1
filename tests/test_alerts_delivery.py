"""Outbox and delivery against both backends (a real SQLite file, a real PostgreSQL database) and
a real local HTTP server in a thread."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pg import fresh_database

from alerts.channels import ChannelSettings, build_payload, by_name, payload_for
from alerts.delivery import HttpxTransport, backoff_s, deliver, retry_after, run_worker
from alerts.outbox import DEAD, SENT, OutboxQueue, open_outbox
from alerts.routing import route
from ingest.store import open_store
from schemas.alerts import Alert, AlertChange, Change, Notification, Severity, Status

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HANG_S = 0.6
TIMEOUT_S = 0.25
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


@pytest.fixture()
def clock() -> Clock:
    """A fake clock starting at T0 + 3 h."""
    return Clock(T0 + timedelta(hours=3))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL of each backend (a new SQLite file; a new PostgreSQL database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture()
def outbox(url: str) -> Iterator[OutboxQueue]:
    """An outbox in a fresh store of each backend."""
    box = open_outbox(url)
    yield box
    box.close()


@pytest.fixture()
def transport() -> Iterator[HttpxTransport]:
    """The real httpx transport."""
    t = HttpxTransport()
    yield t
    t.close()


def start(clock: Clock, behaviour: Behaviour = lambda n, at, path: "ok") -> Receiver:
    """A receiver with the given behaviour."""
    return Receiver(clock, behaviour)


def all_channels(base: str) -> dict[str, ChannelSettings]:
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
    return by_name([ChannelSettings.model_validate({**s, "timeout_s": TIMEOUT_S}) for s in specs])


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


def test_each_platform_receives_its_payload(clock: Clock, outbox: OutboxQueue,
                                            transport: HttpxTransport) -> None:
    """Each channel gets its builder's body as JSON, with the Idempotency-Key and its headers."""
    server = start(clock)
    try:
        channels = all_channels(server.base)
        notes = enqueue(outbox, channels, evaluations()[0], clock())
        report = deliver(outbox, channels, {"http": transport}, clock)
    finally:
        server.close()
    assert (report.sent, report.failed, report.dead) == (len(notes), 0, 0) == (10, 0, 0)
    by_key = {r.key: r for r in server.requests}
    for note in notes:
        req = by_key[note.id]
        assert json.loads(req.body) == build_payload(note, channels[note.channel].type)
        assert req.headers["content-type"].startswith("application/json")
    prefixes = {r.path.split("/")[1] for r in server.requests}
    assert prefixes == {"slack", "teams", "chat", "mm", "hook"}
    chat = [r for r in server.requests if r.path.startswith("/chat/")]
    assert all("messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD" in r.query
               and "token=GTOKEN" in r.query for r in chat)
    hooks = [r for r in server.requests if r.path == "/hook"]
    assert all(r.headers["authorization"] == "Bearer HOOKTOKEN" for r in hooks)
    assert outbox.depth() == {}


def outage(recover_at: datetime) -> Behaviour:
    """Until ``recover_at``: 500s, hangs (answered too late) and 429 Retry-After in turn."""
    kinds = ("fail", "hang", "throttle")
    return lambda n, at, path: "ok" if at >= recover_at else kinds[n % 3]


def test_outage_then_recovery_delivers_each_once_in_order(
        clock: Clock, outbox: OutboxQueue, transport: HttpxTransport,
        caplog: pytest.LogCaptureFixture) -> None:
    """Ten minutes of 500s, timeouts and 429s: after recovery every notification was accepted
    exactly once (the receiver drops repeats by Idempotency-Key), in enqueue order per channel
    (so per alert key), Retry-After was honoured, and no log line holds a URL or token."""
    caplog.set_level(logging.DEBUG)
    begin = clock()
    recover_at = begin + timedelta(minutes=10)
    server = start(clock, outage(recover_at))
    wall = time.monotonic()
    notes: list[Notification] = []
    pending = evaluations()
    try:
        channels = all_channels(server.base)
        for _ in range(600):
            if pending and clock() >= begin + timedelta(minutes=3 * (3 - len(pending))):
                notes += enqueue(outbox, channels, pending.pop(0), clock())
            deliver(outbox, channels, {"http": transport}, clock, pace_s={})  # pacing: below
            if not pending and not outbox.depth():
                break
            clock.advance(5)
    finally:
        server.close()
    wall = time.monotonic() - wall

    assert not outbox.depth() and clock() >= recover_at
    assert len(notes) == 25
    # exactly once, as the receiver sees it
    assert sorted(server.accepted) == sorted(n.id for n in notes)
    assert all(i.status == SENT for i in outbox.items())
    failures = {r.action for r in server.requests if r.at < recover_at}
    assert {"fail", "hang", "throttle"} <= failures
    # in enqueue order per channel, hence per alert key
    seq = {i.id: i.seq for i in outbox.items()}
    for name in channels:
        order = [seq[k] for k in server.accepted if outbox_channel(outbox, k) == name]
        assert order == sorted(order), name
    for key in ("bottleneck/claims/A", "bottleneck/claims/B", "bottleneck/payments/C"):
        for name in ("hook",):
            got = [c["change"] for r in server.requests if r.path == "/hook" and r.outcome == "accepted"
                   for c in json.loads(r.body)["changes"] if c["alert"]["key"] == key]
            want = [c.change.value for n in notes if n.channel == name for c in n.changes
                    if c.alert.key == key]
            assert got == want, key
    # Retry-After: 20 honoured
    for i, req in enumerate(server.requests):
        if req.action == "throttle":
            later = [r.at for r in server.requests[i + 1:] if r.key == req.key]
            assert later and later[0] - req.at >= timedelta(seconds=20)
    # no URL or token anywhere in the logs or the stored errors
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert server.base not in text
        assert not any(s in text for s in SECRETS), text
    for item in outbox.items():
        assert not any(s in (item.last_error or "") for s in SECRETS)
    assert wall < 30
    print(f"outage: {len(server.requests)} requests, {len(notes)} notifications, "
          f"{sum(r.outcome == 'duplicate' for r in server.requests)} duplicates dropped by the "
          f"receiver, {wall:.1f}s wall for {(clock() - begin).total_seconds() / 60:.0f} fake min")


def outbox_channel(outbox: OutboxQueue, id: str) -> str:
    """The channel of a stored notification."""
    return next(i.channel for i in outbox.items() if i.id == id)


def test_client_error_goes_dead_after_three_attempts_and_unblocks(
        clock: Clock, outbox: OutboxQueue, transport: HttpxTransport) -> None:
    """A 400 is the sender's fault: dead after 3 attempts; the channel's next message then goes."""
    bad_id: list[str] = []
    server = start(clock, lambda n, at, path: "bad" if not bad_id or n < 3 else "ok")
    try:
        channels = {"hook": all_channels(server.base)["hook"]}
        first = enqueue(outbox, channels, evaluations()[0], clock())
        bad_id.append(first[0].id)
        second = enqueue(outbox, channels, evaluations()[1], clock())
        reports = []
        for _ in range(20):
            reports.append(deliver(outbox, channels, {"http": transport}, clock))
            clock.advance(10)
    finally:
        server.close()
    assert [i.status for i in outbox.items()] == [DEAD, SENT, SENT]
    dead = outbox.items(status=DEAD)[0]
    assert dead.id == first[0].id and dead.attempts == 3 and dead.last_error == "HTTP 400"
    assert sum(r.dead for r in reports) == 1
    assert [r.key for r in server.requests[3:]] == [first[1].id, second[0].id]


def test_transient_failures_give_up_after_the_set_time(clock: Clock, outbox: OutboxQueue,
                                                       transport: HttpxTransport) -> None:
    """500s forever: retried with growing waits, then dead once give_up_after has passed since
    the notification was enqueued (counted on the delivery clock)."""
    server = start(clock, lambda n, at, path: "fail")
    began = clock()
    try:
        channels = {"hook": all_channels(server.base)["hook"]}
        note = enqueue(outbox, channels, evaluations()[1], clock())[0]
        dead = 0
        while not dead:
            dead += deliver(outbox, channels, {"http": transport}, clock,
                            give_up_after=timedelta(minutes=5)).dead
            clock.advance(10)
    finally:
        server.close()
    item = outbox.items()[0]
    assert item.id == note.id and item.status == DEAD and item.last_error == "HTTP 500"
    deadline = began + timedelta(minutes=5)
    assert server.requests[-2].at < deadline <= server.requests[-1].at  # the first try past it
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(server.requests)]
    assert gaps == sorted(gaps) and len(server.requests) == item.attempts


def test_unreachable_endpoint_is_retried_with_backoff(clock: Clock, outbox: OutboxQueue,
                                                      transport: HttpxTransport) -> None:
    """Connection refused: the item stays pending with a growing wait and an error without URL."""
    server = start(clock)
    base = server.base
    server.close()  # nothing listens there any more
    channels = {"slack": all_channels(base)["slack"]}
    enqueue(outbox, channels, evaluations()[0], clock())
    report = deliver(outbox, channels, {"http": transport}, clock)
    assert (report.sent, report.failed) == (0, 1)
    item = outbox.items()[0]
    assert item.status == "pending" and item.last_error == "connection failed (ConnectError)"
    assert timedelta(seconds=0.5) <= item.next_attempt_at - clock() <= timedelta(seconds=1)
    assert outbox.due(clock()) == []


def test_removed_channel_items_go_dead(clock: Clock, outbox: OutboxQueue,
                                       transport: HttpxTransport) -> None:
    """A notification for a channel no longer configured is given up, not retried forever."""
    channels = all_channels("http://127.0.0.1:9")
    enqueue(outbox, {"mm": channels["mm"]}, evaluations()[0], clock())
    report = deliver(outbox, {}, {"http": transport}, clock)
    assert report.dead == 2 and outbox.depth() == {}


def test_worker_thread_delivers_and_stops(outbox: OutboxQueue, transport: HttpxTransport) -> None:
    """run_worker sends what is enqueued while it runs and returns once stopped."""
    wall = Clock(datetime.now(UTC))
    server = start(wall)
    stop = threading.Event()
    channels = {"hook": all_channels(server.base)["hook"]}
    worker = threading.Thread(target=run_worker, args=(outbox, channels, {"http": transport}),
                              kwargs={"stop": stop, "now": lambda: datetime.now(UTC),
                                      "idle_sleep": 0.05})
    worker.start()
    try:
        notes = enqueue(outbox, channels, evaluations()[0], datetime.now(UTC))
        deadline = time.monotonic() + 10
        while len(server.accepted) < len(notes) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(5)
        server.close()
    assert not worker.is_alive()
    assert server.accepted == [n.id for n in notes]


def test_outbox_persists_dedupes_and_shares_the_store_file(url: str) -> None:
    """Same id twice is one row; rows survive a reopen; the event store uses the same file
    (database)."""
    store = open_store(url)
    box = open_outbox(url)
    channels = all_channels("http://127.0.0.1:9")
    notes = route(evaluations()[0], [], {"hook": channels["hook"]}, T0)
    assert box.enqueue(notes, payload_for(channels)) == 2
    assert box.enqueue(notes, payload_for(channels)) == 0
    box.close()
    again = open_outbox(url)
    assert [i.id for i in again.items()] == [n.id for n in notes]
    assert json.loads(again.items()[0].payload)["id"] == notes[0].id
    assert again.items()[0].created_at == notes[0].created_at
    assert again.depth() == {"hook": 2}
    assert store.counts() == []  # the events table is intact beside the outbox
    again.close()
    store.close()


def test_a_claimed_head_holds_its_channel_for_other_workers(outbox: OutboxQueue) -> None:
    """A worker's claim hides the head, and the channel behind it, from other workers until it
    is marked, released or its lease runs out; the claiming worker gets it again."""
    channels = all_channels("http://127.0.0.1:9")
    two = {"hook": channels["hook"], "mm": channels["mm"]}
    notes = route(evaluations()[0], [], two, T0)
    outbox.enqueue(notes, payload_for(two), T0)
    lease = timedelta(minutes=5)
    first = outbox.claim(T0, "w1", lease, limit=1)
    assert [i.id for i in first] == [notes[0].id]
    assert [i.id for i in outbox.claim(T0, "w2", lease)] == [notes[1].id]  # mm only
    assert outbox.claim(T0, "w3", lease) == []
    assert [i.id for i in outbox.claim(T0, "w1", lease)] == [notes[0].id]  # renewed
    outbox.mark_sent(notes[0].id, T0)
    assert [i.id for i in outbox.claim(T0, "w3", lease)] == [notes[2].id]  # hook's next
    outbox.release("w2")
    assert [i.id for i in outbox.claim(T0, "w1", lease)] == [notes[1].id]
    assert [i.id for i in outbox.claim(T0, "w4", timedelta(0))] == []
    outbox.release("w1")
    outbox.release("w3")
    expired = outbox.claim(T0, "w5", -timedelta(seconds=1))  # a lease already run out
    assert [i.id for i in expired] == [notes[1].id, notes[2].id]
    assert [i.id for i in outbox.claim(T0, "w6", lease)] == [notes[1].id, notes[2].id]


def test_two_workers_never_send_one_notification_twice(url: str, clock: Clock) -> None:
    """Two delivery workers, each with its own connection, drain one outbox at once: every
    notification is posted exactly once, each channel in enqueue order, and both did work."""
    server = start(clock)
    base = server.base
    channels = by_name([ChannelSettings.model_validate(
        {"name": f"hook{i}", "type": "webhook", "url": f"{base}/hook{i}", "timeout_s": 2})
        for i in range(4)])
    boxes = [open_outbox(url), open_outbox(url)]
    transports = [HttpxTransport(), HttpxTransport()]
    notes: list[Notification] = []
    for i in range(40):
        notes += enqueue(boxes[0], channels, [AlertChange(Change.FIRING, alert(f"S{i}"), T0)],
                         clock())
    sent = [0, 0]
    stop = threading.Event()

    def counter(n: int) -> Callable[[Any], None]:
        def count(report: Any) -> None:
            sent[n] += report.sent
        return count

    workers = [threading.Thread(target=run_worker, args=(boxes[n], channels, {"http": transports[n]}),
                                kwargs={"stop": stop, "now": clock, "idle_sleep": 0.005,
                                        "on_report": counter(n)}) for n in range(2)]
    try:
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while sum(sent) < len(notes) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        for w in workers:
            w.join(10)
        server.close()
        for box, transport in zip(boxes, transports, strict=True):
            box.close()
            transport.close()
    posted = [r.key for r in server.requests]
    assert sorted(posted) == sorted(n.id for n in notes)  # all of them, none twice
    for name in channels:
        in_order = [n.id for n in notes if n.channel == name]
        assert [r.key for r in server.requests if r.path == f"/{name}"] == in_order
    assert sum(sent) == len(notes) == 160
    assert sent[0] > 0 and sent[1] > 0


def test_due_offers_only_each_channels_oldest_pending(outbox: OutboxQueue) -> None:
    """Later items wait behind a channel's head; a head not yet due holds its channel back."""
    channels = all_channels("http://127.0.0.1:9")
    two = {"hook": channels["hook"], "mm": channels["mm"]}
    notes = route(evaluations()[0], [], two, T0)
    outbox.enqueue(notes, payload_for(two), T0)
    assert outbox.due(T0 - timedelta(seconds=1)) == []
    heads = outbox.due(T0)
    assert [i.id for i in heads] == [notes[0].id, notes[1].id]  # hook/claims, mm/claims
    outbox.mark_failed(heads[0].id, "HTTP 500", T0 + timedelta(minutes=1), dead=False)
    assert [i.channel for i in outbox.due(T0)] == ["mm"]
    assert outbox.due(T0 + timedelta(minutes=1))[0].id == heads[0].id
    outbox.mark_sent(heads[0].id, T0)
    assert [i.id for i in outbox.due(T0)] == [notes[1].id, notes[2].id]
    assert outbox.depth() == {"hook": 1, "mm": 2}


def test_retry_after_and_backoff() -> None:
    """Retry-After in seconds or as an HTTP date; backoff doubles from 1 s, capped at 10 min."""
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert retry_after("30") == 30
    assert retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True),
                       now.timestamp()) == 90
    assert retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True),
                       now.timestamp()) == 0
    assert retry_after("soon") is None and retry_after(None) is None
    assert 0.5 <= backoff_s(1) <= 1 and 2 <= backoff_s(3) <= 4
    assert all(300 <= backoff_s(n) <= 600 for n in (11, 20, 60))


def test_bursts_are_paced_per_channel(clock: Clock, outbox: OutboxQueue,
                                      transport: HttpxTransport) -> None:
    """Teams takes at most 4 posts a second: a burst to one Teams channel is spaced >= 0.25 s,
    while another channel's posts go in between."""
    server = start(clock)
    try:
        chans = all_channels(server.base)
        channels = {"teams": chans["teams"], "hook": chans["hook"]}
        for i in range(4):
            changes = [AlertChange(Change.FIRING, alert(f"S{i}"), T0 + timedelta(hours=i))]
            enqueue(outbox, channels, changes, clock())
        report = deliver(outbox, channels, {"http": transport}, clock)
    finally:
        server.close()
    assert report.sent == 8
    teams_times = [r.wall for r in server.requests if r.path.startswith("/teams/")]
    assert len(teams_times) == 4
    assert all(b - a >= 0.24 for a, b in itertools.pairwise(teams_times))


def test_a_round_delivers_a_large_backlog_once_in_order(clock: Clock, outbox: OutboxQueue,
                                                         transport: HttpxTransport) -> None:
    """300 webhook notifications go out in one delivery round, each exactly once, in order
    (their speed is measured by tests/test_bench_alerts.py, not asserted here)."""
    server = start(clock)
    try:
        channels = {"hook": all_channels(server.base)["hook"]}
        notes = []
        for i in range(300):
            changes = [AlertChange(Change.FIRING, alert(f"S{i}"), T0)]
            notes += enqueue(outbox, channels, changes, clock())
        report = deliver(outbox, channels, {"http": transport}, clock)
    finally:
        server.close()
    assert report.sent == 300 and server.accepted == [n.id for n in notes]
