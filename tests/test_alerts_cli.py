"""The alert commands as a user runs them: evaluate, review, silence, ack, run, bad configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ROOT, backlight

from ingest.simulate import Anomalies, StuckCases, simulate
from storage import SQLiteStore, open_outbox

TODAY = datetime.now(UTC).date()
SECRET = "T0SECRET/B0TOKEN/xyzzy"


def months_ago(months: int) -> date:
    """The same day of the month, ``months`` calendar months before today (clamped to 28)."""
    year, month = divmod(TODAY.year * 12 + TODAY.month - 1 - months, 12)
    return date(year, month + 1, min(TODAY.day, 28))


class Receiver:
    """A real local HTTP server that records what chat endpoints would receive."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                outer.paths.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{SECRET}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    """A chat endpoint on this machine."""
    r = Receiver()
    yield r
    r.close()


def governance_config(tmp_path: Path, channel_url: str | None = None) -> Path:
    """Four processes: reviewed 17 and 19 months ago, never reviewed, and one without owner."""
    db = tmp_path / "store.db"
    SQLiteStore(db).close()
    text = (f'[store]\nurl = "sqlite:///{db}"\n\n[alerts]\nresolve_after = "1 hour"\n'
            'base_url = "http://backlight.internal:8080"\n\n')
    for name, owner, reviewed in (("fresh", "ann@example.com", months_ago(17)),
                                  ("stale", "bob@example.com", months_ago(19)),
                                  ("never", "cy@example.com", None),
                                  ("orphan", None, months_ago(2))):
        text += f'[[processes]]\nname = "{name}"\n'
        text += f'owner = "{owner}"\n' if owner else ""
        text += f"last_reviewed = {reviewed.isoformat()}\n" if reviewed else ""
        text += "\n"
    if channel_url:
        text += '[[channels]]\ntype = "webhook"\nname = "ops"\nurl = "${HOOK_URL}"\n'
    path = tmp_path / "b.toml"
    path.write_text(text)
    return path


def evaluate_json(cfg: Path, now: datetime, *extra: str,
                  env: dict[str, str] | None = None) -> list[dict[str, object]]:
    """``alerts evaluate --format json`` at ``now``."""
    out = backlight("alerts", "evaluate", "--config", str(cfg), "--format", "json",
                    "--now", now.isoformat(), *extra, env=env)
    return list(json.loads(out.stdout))


def test_governance_alerts_and_review_resolves_stale(tmp_path: Path) -> None:
    """Reviewed 19 months ago, never reviewed, and no owner fire; 17 months does not;
    `backlight review` resolves the stale alert."""
    cfg = governance_config(tmp_path)
    now = datetime.now(UTC) + timedelta(hours=1)
    firing = {(a["rule"], a["process"]) for a in evaluate_json(cfg, now)
              if a["status"] == "firing"}
    assert firing == {("stale_review", "stale"), ("stale_review", "never"),
                      ("no_owner", "orphan")}
    done = backlight("review", "stale", "--config", str(cfg), "--by", "bob@example.com",
                     "--note", "procedure rewritten")
    assert "stale reviewed by bob@example.com" in done.stdout
    later = evaluate_json(cfg, now + timedelta(hours=2))  # clear for resolve_after (1 hour)
    stale = [a for a in later if a["process"] == "stale"]
    assert [a["status"] for a in stale] == ["resolved"]
    listed = json.loads(backlight("alerts", "list", "--config", str(cfg), "--format",
                                  "json").stdout)
    assert {a["process"] for a in listed["alerts"]} == {"never", "orphan"}


def test_alert_json_has_the_documented_fields(tmp_path: Path) -> None:
    """Each alert in `evaluate --format json` has key, rule, process, subject, severity,
    status, since, summary, evidence, owner and a link to its own page."""
    cfg = governance_config(tmp_path)
    alerts = evaluate_json(cfg, datetime.now(UTC) + timedelta(hours=1), "--dry-run")
    stale = next(a for a in alerts if a["process"] == "stale")
    for field in ("key", "rule", "process", "subject", "segment", "severity", "status", "since",
                  "summary", "evidence", "owner"):
        assert field in stale, field
    assert stale["key"] == "stale_review/stale/review"
    assert stale["owner"] == "bob@example.com"
    assert stale["url"] == "http://backlight.internal:8080/alerts/stale_review%2Fstale%2Freview"
    assert "19 months" in str(stale["summary"])


def test_dry_run_changes_no_state(tmp_path: Path) -> None:
    """--dry-run shows what would fire and be sent, and a later real run still fires it."""
    cfg = governance_config(tmp_path)
    now = datetime.now(UTC) + timedelta(hours=1)
    for _ in range(2):
        out = backlight("alerts", "evaluate", "--config", str(cfg), "--dry-run",
                        "--now", now.isoformat())
        assert "stale_review" in out.stdout and "no accountable owner" in out.stdout
    listed = json.loads(backlight("alerts", "list", "--config", str(cfg), "--format",
                                  "json").stdout)
    assert listed["alerts"] == []


def test_silence_ack_and_unsilence_from_the_cli(tmp_path: Path) -> None:
    """A silence marks matching alerts silenced until it expires; ack records who took it;
    unsilence ends the silence at once, so the next evaluation no longer mutes the alert."""
    cfg = governance_config(tmp_path)
    now = datetime.now(UTC) - timedelta(minutes=5)  # acknowledgements are stamped "now"
    evaluate_json(cfg, now)
    out = backlight("alerts", "silence", "--config", str(cfg), "--process", "orphan",
                    "--until", "2 days", "--by", "ops", "--why", "owner being appointed")
    assert out.stdout.startswith("silence ")
    backlight("alerts", "ack", "stale_review/never/review", "--config", str(cfg), "--by", "cy")
    alerts = {a["process"]: a for a in evaluate_json(cfg, now + timedelta(minutes=10))}
    assert alerts["orphan"]["silenced"] is True
    assert alerts["never"]["acknowledged_by"] == "cy"
    unknown = backlight("alerts", "ack", "no/such/key", "--config", str(cfg), "--by", "cy",
                        check=False)
    assert unknown.returncode == 1 and "no/such/key" in unknown.stderr
    silence_id = out.stdout.split()[1]
    ended = backlight("alerts", "unsilence", silence_id, "--config", str(cfg), "--by", "ops")
    assert ended.stdout.strip() == f"silence {silence_id} ended"
    listed = json.loads(backlight("alerts", "list", "--config", str(cfg), "--format",
                                  "json").stdout)
    assert listed["silences"] == []
    after = {a["process"]: a for a in evaluate_json(cfg, datetime.now(UTC) + timedelta(minutes=1))}
    assert after["orphan"]["silenced"] is False and after["orphan"]["status"] == "firing"


def test_ack_names_the_fix_owner_and_action_and_notes_are_queued_once(
        tmp_path: Path, receiver: Receiver) -> None:
    """`alerts ack --owner --action` shows on `alerts list` (text and JSON) at once; the next
    evaluation queues ACKNOWLEDGED once; `alerts note` on the announced alert is queued for
    its channel, on a resolved or unknown one refused (exit 1, naming the key)."""
    cfg = governance_config(tmp_path, receiver.url)
    env = {"HOOK_URL": receiver.url}
    now = datetime.now(UTC) - timedelta(minutes=5)
    evaluate_json(cfg, now, env=env)
    key = "stale_review/never/review"
    out = backlight("alerts", "ack", key, "--config", str(cfg), "--by", "cy", "--owner",
                    "clm-ops", "--action", "review booked for Monday", env=env)
    assert out.stdout.strip() == (f"acknowledged {key} by cy; fix owned by clm-ops: "
                                  "review booked for Monday")
    listed = json.loads(backlight("alerts", "list", "--config", str(cfg), "--format", "json",
                                  env=env).stdout)
    mine = next(a for a in listed["alerts"] if a["key"] == key)
    assert (mine["fix_owner"], mine["action"]) == ("clm-ops", "review booked for Monday")
    text = backlight("alerts", "list", "--config", str(cfg), env=env).stdout
    assert "fix owned by clm-ops: review booked for Monday" in text
    again = evaluate_json(cfg, now + timedelta(minutes=1), env=env)
    assert next(a for a in again if a["key"] == key)["fix_owner"] == "clm-ops"
    noted = backlight("alerts", "note", key, "--config", str(cfg), "--by", "cy", "--text",
                      "reviewer asked for the model", env=env)
    assert noted.stdout.strip() == f"noted on {key} by cy; queued for its channels"
    refused = backlight("alerts", "note", "no/such/key", "--config", str(cfg), "--by", "cy",
                        "--text", "x", env=env, check=False)
    assert refused.returncode == 1 and "no/such/key" in refused.stderr
    blank = backlight("alerts", "note", key, "--config", str(cfg), "--by", "cy", "--text", " ",
                      env=env, check=False)
    assert blank.returncode == 2 and "--text" in blank.stderr
    outbox = open_outbox(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        bodies = [json.loads(item.payload) for item in outbox.items()]
    finally:
        outbox.close()
    kinds = [c["change"] for b in bodies for c in b["changes"] if c["alert"]["key"] == key]
    assert kinds == ["firing", "acknowledged", "note"]
    said = [c for b in bodies for c in b["changes"] if c["change"] in ("acknowledged", "note")]
    assert said[0]["alert"]["action"] == "review booked for Monday"
    assert said[1]["note"]["text"] == "reviewer asked for the model"


def test_run_delivers_to_a_real_webhook_without_logging_its_url(tmp_path: Path,
                                                               receiver: Receiver) -> None:
    """`alerts run` evaluates and posts to the configured webhook; the URL never shows."""
    cfg = governance_config(tmp_path, receiver.url)
    env = {"HOOK_URL": receiver.url}
    proc = subprocess.Popen([sys.executable, "-m", "backlight", "alerts", "run", "--config",
                             str(cfg), "--every", "1 minute"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(receiver.bodies) < 3:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    processes = sorted(str(b["process"]) for b in receiver.bodies)
    assert processes == ["never", "orphan", "stale"]
    assert SECRET not in out and SECRET not in err
    assert "xyzzy" not in out + err


@pytest.mark.parametrize(("text", "needle"), [
    ('[alerts.rules.bogus]\nenabled = true\n', "alerts.rules.bogus: unknown key"),
    ('[alerts.rules.bottleneck]\nmin_ratio = 0.5\n', "alerts.rules.bottleneck.min_ratio"),
    ('[alerts.rules.stuck]\nmin_idle = "3 fortnights"\n', "alerts.rules.stuck.min_idle"),
    ('[alerts]\nrepeat_interval = "soon"\n', "alerts.repeat_interval"),
    ('[[processes]]\nname = "x"\nsla = "5 business parsecs"\n', "processes[0].sla"),
    ('[[processes]]\nname = "x"\n[processes.rules.bogus]\nenabled = false\n',
     "processes[0].rules"),
    ('[[channels]]\ntype = "pager"\nurl = "https://x"\n', "channels[0].type"),
    ('[[channels]]\ntype = "slack"\nurl = "https://x"\n[[alerts.routes]]\nchannels = ["nope"]\n',
     "no channel named 'nope'"),
])
def test_bad_alert_config_exits_2_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    """An unknown rule, a bad threshold, a bad duration or an unknown channel type: exit 2."""
    cfg = tmp_path / "b.toml"
    cfg.write_text(text)
    proc = backlight("alerts", "evaluate", "--config", str(cfg), "--dry-run", check=False)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluate_on_simulated_history(tmp_path: Path) -> None:
    """Stuck cases injected by the simulator are listed by case id in the evaluation."""
    db = tmp_path / "store.db"
    sim = simulate("claims", 1500, seed=5, anomalies=Anomalies(stuck=StuckCases("Assessment")))
    store = SQLiteStore(db)
    store.write(sim.events)
    store.close()
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[store]\nurl = "sqlite:///{db}"\n\n[[processes]]\nname = "claims"\n'
                   f'owner = "claims-lead@example.com"\nlast_reviewed = {TODAY.isoformat()}\n'
                   'end_activities = ["Close claim"]\n')
    now = sim.events[-1].timestamp + timedelta(hours=1)
    alerts = evaluate_json(cfg, now, "--dry-run")
    stuck = [a for a in alerts if a["rule"] == "stuck"]
    assert stuck, alerts
    listed = {c for a in stuck for c in a["cases"]}  # type: ignore[union-attr]
    injected = set(sim.ground_truth["anomalies"]["stuck"]["cases"])
    assert len(listed & injected) >= 0.9 * len(listed)  # what it lists was injected
    assert len(listed & injected) >= 0.5 * len(injected)  # the old enough ones are found


def test_evaluate_says_which_end_activities_it_learned(tmp_path: Path) -> None:
    """A process whose config names no end_activities gets them learned from its events, and
    `alerts evaluate` says so, naming them (the simulator's own end activities)."""
    db = tmp_path / "store.db"
    sim = simulate("claims", 600, seed=5)
    store = SQLiteStore(db)
    store.write(sim.events)
    store.close()
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[store]\nurl = "sqlite:///{db}"\n\n[[processes]]\nname = "claims"\n'
                   f'owner = "claims-lead@example.com"\nlast_reviewed = {TODAY.isoformat()}\n')
    now = sim.events[-1].timestamp + timedelta(hours=1)
    out = backlight("alerts", "evaluate", "--config", str(cfg), "--dry-run", "--now",
                    now.isoformat())
    said = "# claims: no end_activities configured; learned from the data: "
    [line] = [x for x in out.stderr.splitlines() if x.startswith(said)]
    assert sorted(line[len(said):].split(", ")) == sorted(sim.ground_truth["end_activities"])
