"""Outbox and delivery against both backends (a real SQLite file, a real PostgreSQL database) and
a real local HTTP server in a thread."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from chat_support import (  # noqa: F401 (the *_fixture: fixtures, used by name)
    HANG_TIMEOUT_S,
    SECRETS,
    T0,
    Behaviour,
    Clock,
    alert,
    all_channels,
    clock_fixture,
    enqueue,
    evaluations,
    outbox_fixture,
    start,
    transport_fixture,
    url_fixture,
)

from alerts.channels import build_payload
from alerts.delivery import HttpxTransport, backoff_s, deliver, retry_after, run_worker
from schemas.alerts import AlertChange, Change, Notification
from storage import OutboxQueue
from storage.outbox import DEAD, SENT


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
        channels = all_channels(server.base, timeout_s=HANG_TIMEOUT_S)
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
