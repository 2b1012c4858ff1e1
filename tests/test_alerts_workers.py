"""Concurrent alert workers on one store (a real SQLite file, a real PostgreSQL database): two
`backlight alerts run` processes evaluating and delivering at once send each change to the
webhook once; an evaluation stores its state only under its lease; an outbox claim taken over
cannot be marked by the worker that lost it; notification ids name transitions, not times."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from chat_support import (  # noqa: F401 (the *_fixture: fixtures, used by name)
    T0,
    Clock,
    Receiver,
    all_channels,
    enqueue,
    evaluations,
    outbox_fixture,
    start,
    url_fixture,
)
from conftest import ROOT

from alerts.delivery import HttpxTransport
from alerts.errors import DeliveryError, LeaseLost
from alerts.lifecycle import LifecyclePolicy, advance
from alerts.routing import route
from backlight import alerting
from backlight.config import Settings, load
from schemas.alerts import Acknowledgement, Alert, Finding, Severity, Silence, Status
from storage import OutboxQueue, evaluation_lease, open_alert_state, open_store
from storage.outbox import PENDING, SENT

PROCESSES = ("alpha", "beta", "gamma")
DEADLINE_S = 180.0
"""Only a guard against a hang: a loaded machine may take long, never this long."""


def wait_for(what: str, done: Callable[[], bool]) -> None:
    """Poll until ``done()``; fail naming ``what`` after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE_S:.0f}s: {what}")
        time.sleep(0.05)


def workers_config(tmp_path: Path, url: str, hook: str) -> Path:
    """Three processes that are never reviewed (a stale_review alert each), one webhook."""
    text = f'[store]\nurl = "{url}"\n\n'
    for name in PROCESSES:
        text += f'[[processes]]\nname = "{name}"\nowner = "{name}@example.com"\n\n'
    text += f'[[channels]]\ntype = "webhook"\nname = "ops"\nurl = "{hook}"\n'
    path = tmp_path / "workers.toml"
    path.write_text(text)
    return path


def delivered(receiver: Receiver) -> list[tuple[str, str, str | None]]:
    """Each change the webhook received: (alert key, change, silence id for SILENCED)."""
    with receiver.lock:
        bodies = [json.loads(r.body) for r in receiver.requests]
    return [(c["alert"]["key"], c["change"],
             c["alert"]["silenced_by"] if c["change"] == "silenced" else None)
            for body in bodies for c in body["changes"]]


def rounds(out: Path) -> int:
    """How many rounds an `alerts run` worker reported on stdout."""
    return sum(1 for line in out.read_text().splitlines() if " alerts, " in line)


def test_two_workers_send_each_change_to_the_webhook_once(tmp_path: Path, url: str) -> None:
    """Two `alerts run` workers on one store, at least 50 rounds each while silences come and
    go: every FIRING and every SILENCED reaches the webhook exactly once, under one key each."""
    open_store(url).close()
    receiver = start(Clock(T0))
    cfg = workers_config(tmp_path, url, f"{receiver.base}/hook")
    settings = load(cfg)
    outs = [tmp_path / f"worker{i}.out" for i in range(2)]
    # a round every 0.06 s: the 50 rounds are bound by the rounds' own work, not by waits
    procs = [subprocess.Popen(
        [sys.executable, "-m", "backlight", "alerts", "run", "--config", str(cfg),
         "--every", "0.001 minutes"], cwd=ROOT, env={**os.environ},
        stdout=out.open("w"), stderr=(tmp_path / f"worker{i}.err").open("w"))
        for i, out in enumerate(outs)]
    keys = {f"stale_review/{p}/review" for p in PROCESSES}
    cycles = 0
    try:
        wait_for("each process's alert fired", lambda: {
            k for k, change, _ in delivered(receiver) if change == "firing"} == keys)
        while cycles < 10 or min(rounds(out) for out in outs) < 50:
            silences = silence_all(settings)
            ids = {s.id for s in silences}
            wait_for(f"cycle {cycles}: every alert's SILENCED delivered",
                     lambda ids=ids: ids <= {
                         sid for _, change, sid in delivered(receiver) if change == "silenced"})
            for s in silences:
                alerting.unsilence(settings, s.id, "test")
            wait_for(f"cycle {cycles}: the state no longer silenced", lambda: not any(
                a.silenced for a in stored_alerts(url).values()))
            cycles += 1
            assert all(p.poll() is None for p in procs), "a worker exited"
    finally:
        for p in procs:
            p.terminate()
        codes = [p.wait(timeout=60) for p in procs]
        receiver.close()
    assert codes == [0, 0], [(tmp_path / f"worker{i}.err").read_text()[-2000:] for i in (0, 1)]
    changes = Counter(delivered(receiver))
    assert {n for n in changes.values()} == {1}, [c for c, n in changes.items() if n > 1]
    per_kind = Counter(change for _, change, _ in changes)
    assert per_kind == {"firing": len(keys), "silenced": len(keys) * cycles}
    sent_keys = [r.key for r in receiver.requests]
    assert len(set(sent_keys)) == len(sent_keys)
    assert all(rounds(out) >= 50 for out in outs)


def silence_all(settings: Settings) -> list[Silence]:
    """One silence per process, for an hour."""
    now = datetime.now(UTC)
    return [alerting.silence(settings, until=now + timedelta(hours=1), by="test", why="drill",
                             key=None, rule=None, process=p, now=now) for p in PROCESSES]


def stored_alerts(url: str) -> dict[str, Alert]:
    """The alerts as stored now."""
    state = open_alert_state(url)
    try:
        return state.alerts()
    finally:
        state.close()


def firing(subject: str, process: str = "alpha") -> Alert:
    """A firing alert of ``process`` as an evaluation would store it."""
    return Alert(key=f"stale_review/{process}/{subject}", rule="stale_review", process=process,
                 subject=subject, severity=Severity.WARNING, status=Status.FIRING,
                 summary="never reviewed", evidence={}, segment={}, since=date(2026, 1, 1),
                 cases=(), owner="ann", first_seen=T0, last_seen=T0, fired_at=T0)


def test_an_evaluation_stores_its_state_only_under_its_lease(url: str) -> None:
    """One worker holds a process's evaluation lease until it expires; the other then takes it
    over, and the first one's late commit is refused whole (no alert, no history written)."""
    state = open_alert_state(url)
    other = open_alert_state(url)
    lease = [evaluation_lease("alpha"), evaluation_lease("beta")]
    try:
        assert state.take_leases(lease, "w1", timedelta(minutes=5)) == lease
        assert other.take_leases(lease, "w2", timedelta(minutes=5)) == []
        assert state.take_leases(lease[:1], "w1", timedelta(0)) == lease[:1]  # renewed, expired
        assert other.take_leases(lease, "w2", timedelta(minutes=5)) == lease[:1]
        alert = firing("review")
        with pytest.raises(LeaseLost):
            state.commit([alert], [], ["alpha"], "w1")
        assert other.alerts() == {} and other.history() == []
        other.commit([alert], [], ["alpha"], "w2")
        assert other.alerts() == {alert.key: alert}
        pending = replace(firing("review", "beta"), status=Status.PENDING, fired_at=None)
        state.commit([pending], [], ["beta"], "w1")  # w1 still holds beta
        assert set(other.alerts()) == {alert.key, pending.key}
        other.release_leases(lease, "w2")
        assert state.take_leases(lease[:1], "w1", timedelta(minutes=5)) == lease[:1]
        state.commit([], [], ["alpha"], "w1")  # beta's pending alert is not alpha's to drop
        assert set(other.alerts()) == {alert.key, pending.key}
        state.commit([], [], ["beta"], "w1")  # cleared in its own process's evaluation
        assert set(other.alerts()) == {alert.key}
    finally:
        state.close()
        other.close()


def test_of_workers_racing_for_a_free_lease_exactly_one_wins(url: str) -> None:
    """Eight workers, each on its own connection, ask for the same free leases at once, 20
    times over: each time exactly one holds each lease."""
    states = [open_alert_state(url) for _ in range(8)]
    try:
        for round_ in range(20):
            names = [evaluation_lease(f"p{round_}-{i}") for i in range(3)]
            barrier = threading.Barrier(len(states))
            won: dict[str, list[str]] = {}

            def race(i: int, names: list[str] = names,
                     barrier: threading.Barrier = barrier,
                     won: dict[str, list[str]] = won) -> None:
                barrier.wait()
                won[f"w{i}"] = states[i].take_leases(names, f"w{i}", timedelta(minutes=5))

            threads = [threading.Thread(target=race, args=(i,)) for i in range(len(states))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(DEADLINE_S)
            holders = Counter(name for held in won.values() for name in held)
            assert len(won) == len(states) and holders == dict.fromkeys(names, 1)
    finally:
        for state in states:
            state.close()


def test_a_claim_taken_over_cannot_be_marked_by_its_old_holder(outbox: OutboxQueue) -> None:
    """Worker A's claim runs out and B takes the notification: A can mark it neither sent nor
    failed (LeaseLost, row unchanged); B, the holder, marks it sent."""
    channels = all_channels("http://127.0.0.1:9")
    enqueue(outbox, {"hook": channels["hook"]}, evaluations()[0], T0)
    (a_item,) = outbox.claim(T0, "A", timedelta(0))  # a lease already over
    (b_item,) = outbox.claim(T0, "B", timedelta(minutes=5))
    assert a_item.id == b_item.id and a_item.claim_token != b_item.claim_token
    with pytest.raises(LeaseLost):
        outbox.mark_sent(a_item.id, T0, claim_token=a_item.claim_token)
    with pytest.raises(LeaseLost):
        outbox.mark_failed(a_item.id, "HTTP 500", T0, dead=True, claim_token=a_item.claim_token)
    row = outbox.items()[0]
    assert (row.id, row.status, row.attempts) == (a_item.id, PENDING, 0)
    assert outbox.claim(T0, "A", timedelta(minutes=5)) == []  # B holds the channel's head
    outbox.mark_sent(b_item.id, T0, claim_token=b_item.claim_token)
    row = outbox.items()[0]
    assert (row.id, row.status, row.attempts) == (b_item.id, SENT, 1)
    with pytest.raises(LeaseLost):  # sent already: a late outcome of anyone is refused
        outbox.mark_failed(b_item.id, "late", T0, dead=True, claim_token=b_item.claim_token)
    assert outbox.items()[0].status == SENT


def finding(process: str = "alpha", severity: Severity = Severity.WARNING) -> Finding:
    """A stale_review finding."""
    return Finding(rule="stale_review", process=process, subject="review", severity=severity,
                   summary="never reviewed")


def notified(previous: dict[str, Alert], now: datetime, *found: Finding,
             silences: tuple[Silence, ...] = (), acks: dict[str, Acknowledgement] | None = None,
             escalate_after: timedelta | None = None) -> tuple[dict[str, Alert], list[str]]:
    """One evaluation at ``now``: the new state and the ids of its notifications."""
    channels = {"hook": all_channels("http://127.0.0.1:9")["hook"]}
    result = advance(previous, list(found), now=now, policy=LifecyclePolicy(
        resolve_after=timedelta(hours=1), repeat_interval=timedelta(days=1),
        escalate_after=escalate_after), owners={"alpha": "ann"}, evaluated={"alpha"},
        silences=silences, acks=acks or {})
    return ({a.key: a for a in result.alerts},
            [n.id for n in route(result.changes, [], channels, now)])


def test_overlapping_evaluations_name_a_transition_alike() -> None:
    """Two evaluations from the same stored state at different times give the same ids for a
    FIRING, a REPEAT, a SILENCED and a RESOLVED; the next episode's FIRING is a new id."""
    fired_a, ids_a = notified({}, T0, finding())
    _, ids_b = notified({}, T0 + timedelta(seconds=7), finding())
    assert len(ids_a) == 1 and ids_a == ids_b
    later = T0 + timedelta(days=2)
    _, repeat_a = notified(fired_a, later, finding())
    _, repeat_b = notified(fired_a, later + timedelta(minutes=3), finding())
    assert len(repeat_a) == 1 and repeat_a == repeat_b and repeat_a != ids_a
    mute = Silence(id="s1", until=later + timedelta(days=1), by="ops", why="drill",
                   created_at=T0, process="alpha")
    _, silenced_a = notified(fired_a, later, finding(), silences=(mute,))
    _, silenced_b = notified(fired_a, later + timedelta(minutes=1), finding(), silences=(mute,))
    assert silenced_a == silenced_b and silenced_a != repeat_a
    resolved, resolved_a = notified(fired_a, later)
    _, resolved_b = notified(fired_a, later + timedelta(hours=5))
    assert len(resolved_a) == 1 and resolved_a == resolved_b
    (alert,) = resolved.values()
    assert alert.status is Status.RESOLVED
    _, again = notified(resolved, later + timedelta(days=1), finding())
    assert len(again) == 1 and again != ids_a


def test_escalation_and_acknowledgement_are_named_alike_by_overlapping_evaluations() -> None:
    """ESCALATED and ACKNOWLEDGED from one stored state: one id whatever the evaluation time."""
    fired, _ = notified({}, T0, finding())
    later = T0 + timedelta(hours=3)
    _, escalated_a = notified(fired, later, finding(), escalate_after=timedelta(hours=2))
    _, escalated_b = notified(fired, later + timedelta(minutes=9), finding(),
                              escalate_after=timedelta(hours=2))
    assert len(escalated_a) == 1 and escalated_a == escalated_b
    key = next(iter(fired))
    acks = {key: Acknowledgement(key, "ann", T0 + timedelta(hours=1), "on it")}
    _, acked_a = notified(fired, later, finding(), acks=acks)
    _, acked_b = notified(fired, later + timedelta(minutes=9), finding(), acks=acks)
    assert len(acked_a) == 1 and acked_a == acked_b and acked_a != escalated_a


def test_a_post_answered_by_a_trickle_ends_at_its_overall_deadline() -> None:
    """A receiver that trickles its answer a byte at a time (each within httpx's per-read
    timeout) cannot hold a post past the channel's timeout, so the claim outlives the send."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(600):  # a minute of trickle, unless the test is over
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(b"a")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    transport = HttpxTransport()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    began = time.monotonic()
    try:
        with pytest.raises(DeliveryError, match="timed out after 1s"):
            transport.post(url, b"{}", {"Content-Type": "application/json"}, timeout_s=1.0)
        assert time.monotonic() - began < 30  # not the trickle's minute (a hang guard only)
    finally:
        stop.set()
        transport.close()
        server.close()
        thread.join(5)
