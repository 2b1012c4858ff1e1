"""The weekly digest against a real store (SQLite and PostgreSQL) and a real local webhook
server: its content equals the store's state, and it reaches each channel of the escalation
route exactly once although two workers and a restarted one queue it at the scheduled minute
and two delivery workers send concurrently; ``backlight alerts digest`` queues it by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from act_support import alert, at, history, states
from chat_support import (  # noqa: F401 (the *_fixture: fixtures, used by name)
    T0,
    Clock,
    Receiver,
    start,
    url_fixture,
)

from alerts.channels.slack import MAX_BLOCKS
from backlight.alerting import deliver_outbox
from backlight.config import Settings, load
from backlight.digest_job import queue_due
from storage import open_alert_state, open_outbox, open_store

ROOT = Path(__file__).resolve().parents[1]
SCHEDULED = at(8, 8)  # Tuesday 10 November 2026, 08:00 UTC
CHANNELS = ("slack", "teams", "gchat", "mm", "hook")


def fill(url: str) -> None:
    """The scripted history, and an ownerless process's alert, in the store."""
    open_store(url).close()
    state = open_alert_state(url)
    try:
        orphan = alert("owner", "no_owner", "orphan", at(0, 10))
        state.save([*states().values(), orphan])
        state.record_changes(history())
    finally:
        state.close()


def config(tmp_path: Path, url: str, base: str) -> Path:
    """Every platform's channel on the receiver, all on one escalation route; another route
    (not an escalation one) sends to the webhook too; the digest on Tuesdays 08:00 UTC."""
    text = (f'[store]\nurl = "{url}"\n[alerts]\nescalate_after = "2 days"\n'
            '[alerts.digest]\nday = "tuesday"\ntime = "08:00"\ntimezone = "UTC"\n'
            '[[alerts.routes]]\nchannels = ["hook"]\nrule = "bottleneck"\n'
            f'[[alerts.routes]]\nescalation = true\nchannels = {json.dumps(list(CHANNELS))}\n')
    for name, kind, path in (("slack", "slack", "slack/T0/B0/SLACKSECRET"),
                             ("teams", "teams", "teams/run?sig=SIGSECRET"),
                             ("gchat", "googlechat", "chat/v1/spaces/AAA/messages?key=k"),
                             ("mm", "mattermost", "mm/hooks/MMSECRET"),
                             ("hook", "webhook", "hook")):
        text += f'[[channels]]\nname = "{name}"\ntype = "{kind}"\nurl = "{base}/{path}"\n'
    path = tmp_path / "digest.toml"
    path.write_text(text)
    return path


def together(*calls: Callable[[], object]) -> None:
    """Run the calls on threads released at once; raise what any raised."""
    gate = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        gate.wait()
        try:
            call()
        except BaseException as exc:
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def received(receiver: Receiver) -> dict[str, list[bytes]]:
    """The bodies each channel's endpoint received, by the first path segment."""
    out: dict[str, list[bytes]] = {}
    with receiver.lock:
        for r in receiver.requests:
            out.setdefault(r.path.split("/")[1], []).append(r.body)
    return out


def test_sent_once_across_two_workers_and_a_restart(tmp_path: Path, url: str) -> None:
    """Two workers queue the week's digest at the scheduled minute, a restarted one again 40 s
    later, two delivery rounds run at once: each channel of the escalation route gets one
    message; the webhook's says what the store holds (C fired; A confirmed; B recurred; B and
    C open, unowned and overdue; the ownerless process; movers B then C)."""
    fill(url)
    receiver = start(Clock(T0))
    try:
        settings = load(config(tmp_path, url, receiver.base))
        together(lambda: queue_due(settings, SCHEDULED + timedelta(seconds=5)),
                 lambda: queue_due(settings, SCHEDULED + timedelta(seconds=5)))
        restarted = queue_due(settings, SCHEDULED + timedelta(seconds=45))
        assert restarted.queued == 0 and len(restarted.digests) == 1
        together(lambda: deliver_outbox(settings), lambda: deliver_outbox(settings))
        deliver_outbox(settings)
        bodies = received(receiver)
    finally:
        receiver.close()
    assert {k: len(v) for k, v in bodies.items()} == {
        "slack": 1, "teams": 1, "chat": 1, "mm": 1, "hook": 1}
    hook = json.loads(bodies["hook"][0])
    assert hook["type"] == "digest"
    assert [i["key"] for i in hook["fired"]] == ["stuck/payments/C"]
    assert [i["key"] for i in hook["confirmed"]] == ["bottleneck/claims/A"]
    assert [i["key"] for i in hook["recurred"]] == ["rework/claims/B"]
    assert [(i["key"], i["overdue"]) for i in hook["open"]] == [
        ("stuck/payments/C", True), ("rework/claims/B", True)]
    assert [i["key"] for i in hook["governance"]] == ["no_owner/orphan/owner"]
    assert [i["key"] for i in hook["movers"]] == ["rework/claims/B", "stuck/payments/C"]
    assert len(json.loads(bodies["slack"][0])["blocks"]) <= MAX_BLOCKS


def test_not_queued_before_its_minute_nor_long_after(tmp_path: Path, url: str) -> None:
    """A round a minute before the scheduled time queues nothing, nor does one two days late."""
    fill(url)
    settings: Settings = load(config(tmp_path, url, "http://127.0.0.1:9"))
    assert queue_due(settings, SCHEDULED - timedelta(minutes=1)).digests == ()
    assert queue_due(settings, SCHEDULED + timedelta(days=2)).digests == ()
    outbox = open_outbox(url)
    try:
        assert outbox.counts() == {}
    finally:
        outbox.close()


def test_the_digest_command_prints_and_queues_once(tmp_path: Path) -> None:
    """`backlight alerts digest --now` prints the week's digest and queues one message per
    channel; run again (a restart), it queues none; --dry-run queues nothing."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    fill(url)
    cfg = config(tmp_path, url, "http://127.0.0.1:9")

    def run(*extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "backlight", "alerts", "digest", "--config",
                               str(cfg), "--now", (SCHEDULED + timedelta(hours=3)).isoformat(),
                               *extra], cwd=ROOT, env={**os.environ}, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout
    dry = run("--dry-run")
    assert "Worst movers" in dry and "OVERDUE" in dry and "orphan:" in dry
    assert "queued" not in dry
    assert "queued 5 new digest messages" in run()
    assert "queued 0 new digest messages" in run()
    outbox = open_outbox(url)
    try:
        assert sum(outbox.counts().values()) == len(CHANNELS)
    finally:
        outbox.close()


def test_a_bad_digest_day_exits_2_naming_the_key(tmp_path: Path) -> None:
    """`[alerts.digest] day = "someday"`: the CLI exits 2 naming alerts.digest.day."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "s.db"}"\n'
                   '[alerts.digest]\nday = "someday"\n')
    done = subprocess.run([sys.executable, "-m", "backlight", "alerts", "digest", "--config",
                           str(cfg), "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 2
    assert "alerts.digest.day" in done.stderr and "not a weekday" in done.stderr

