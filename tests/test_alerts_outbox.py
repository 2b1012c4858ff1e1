"""The outbox against both backends (a real SQLite file, a real PostgreSQL database): it keeps
notifications across reopens beside the event store, offers each channel's oldest first, and
lets several delivery workers share it (claims) without a notification sent twice."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from chat_support import (  # noqa: F401 (the *_fixture: fixtures, used by name)
    T0,
    Clock,
    alert,
    all_channels,
    clock_fixture,
    enqueue,
    evaluations,
    outbox_fixture,
    start,
    url_fixture,
)

from alerts.channels import ChannelSettings, by_name, payload_for
from alerts.delivery import HttpxTransport, run_worker
from alerts.routing import route
from schemas.alerts import AlertChange, Change, Notification
from storage import OutboxQueue, open_outbox, open_store


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
