"""Alerts end to end on a real PostgreSQL store: the simulated demo events evaluated, notified,
delivered to a real local webhook and served by the web app, agreeing with the SQLite store;
and the alert commands run by a user against a PostgreSQL store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from conftest import ROOT, backlight
from pg import fresh_database
from prometheus_client.parser import text_string_to_metric_families
from web_support import WRITER_TOKEN, fill_store, web_settings

from alerts.errors import AlertStateError
from backlight import alerting
from backlight.config import Settings
from backlight.web.server import running
from schemas.alerts import Alert
from storage import SQLiteStore, open_alert_state, open_outbox
from storage.alert_tables import PostgresAlertState
from storage.outbox import SENT
from storage.outbox_tables import PostgresOutbox
from storage.pg_events import PostgresStore

WRITE = {"Authorization": f"Bearer {WRITER_TOKEN}"}


class Hook:
    """A webhook receiver on 127.0.0.1 that records each post's Idempotency-Key and body."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.posts.append((self.headers.get("Idempotency-Key", ""), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Stores:
    sqlite: Settings
    postgres: Settings
    nows: dict[str, datetime]
    hook: Hook


def with_store(settings: Settings, url: str, hook: Hook) -> Settings:
    """The settings over another store URL, with a webhook channel to ``hook``."""
    data = settings.model_dump(mode="python")
    data["store"]["url"] = url
    data["channels"] = [{"name": "hook", "type": "webhook", "url": hook.url}]
    for t in data["web"]["tokens"]:
        t["token"] = t["token"].get_secret_value()
    return Settings.model_validate(data)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Stores]:
    """The demo's simulated processes in a SQLite store and, written with PostgresStore.write
    in the same arrival order, in a fresh PostgreSQL database; settings over each."""
    path: Path = tmp_path_factory.mktemp("alerts-pg") / "store.db"
    nows = fill_store(path, cases=200)
    pg_url = fresh_database(postgres_url)
    source, target = SQLiteStore(path), PostgresStore(pg_url)
    try:
        stored = source.since(0, 10**9)
        assert target.write([e for _, e, _ in stored]) == [True] * len(stored)
    finally:
        source.close()
        target.close()
    hook = Hook()
    base = web_settings(path)
    yield Stores(with_store(base, base.store.url, hook), with_store(base, pg_url, hook), nows,
                 hook)
    hook.close()


def evaluate_all(settings: Settings, nows: dict[str, datetime]) -> list[Alert]:
    """Evaluate each process as of its own "now"; every alert the evaluations showed."""
    out: list[Alert] = []
    for process, now in sorted(nows.items()):
        out += alerting.evaluate(settings, now, processes=[process]).alerts
    return out


def stored_alerts(settings: Settings) -> dict[str, Alert]:
    state = open_alert_state(settings.store.url)
    try:
        return state.alerts()
    finally:
        state.close()


@pytest.fixture(scope="module")
def evaluated(stores: Stores) -> list[Alert]:
    """The alerts of one evaluation per process on the PostgreSQL store (and on SQLite)."""
    evaluate_all(stores.sqlite, stores.nows)
    return evaluate_all(stores.postgres, stores.nows)


def test_evaluation_on_postgresql_fires_what_sqlite_fires(stores: Stores,
                                                          evaluated: list[Alert]) -> None:
    """The same events evaluated on PostgreSQL keep exactly the alerts SQLite keeps, the
    governance ones included: no owner for each configured process without one, and the
    overdue reviews."""
    assert isinstance(open_alert_state(stores.postgres.store.url), PostgresAlertState)
    on_pg = stored_alerts(stores.postgres)
    assert on_pg == stored_alerts(stores.sqlite)
    fired = {(a.rule, a.process) for a in evaluated}
    unowned = {p.name for p in stores.postgres.processes if not p.owners}
    assert unowned and {("no_owner", name) for name in unowned} <= fired
    assert any(rule == "stale_review" for rule, _ in fired)
    assert {a.key for a in evaluated} <= set(on_pg)


def test_notifications_go_through_the_postgresql_outbox_once(stores: Stores,
                                                             evaluated: list[Alert]) -> None:
    """The evaluation queued its notifications in PostgreSQL; delivering sends each to the
    webhook once and marks it sent; delivering again sends nothing."""
    outbox = open_outbox(stores.postgres.store.url)
    try:
        assert isinstance(outbox, PostgresOutbox)
        queued = outbox.items(channel="hook")
        assert queued and all(i.status == "pending" for i in queued)
        before = len(stores.hook.posts)
        report = alerting.deliver_outbox(stores.postgres)
        assert report.sent == len(queued)
        assert alerting.deliver_outbox(stores.postgres).sent == 0
        posted = stores.hook.posts[before:]
        assert [key for key, _ in posted] == [i.id for i in queued]
        assert {k for i in queued for k in i.keys} <= {a.key for a in evaluated}
        assert all(i.status == SENT for i in outbox.items(channel="hook"))
    finally:
        outbox.close()


def test_the_web_app_serves_and_records_over_postgresql(stores: Stores,
                                                        evaluated: list[Alert]) -> None:
    """/api/processes, /api/alerts and /metrics read the PostgreSQL store and state; an
    acknowledgement and a review posted with the writer's token are recorded there."""
    settings = stores.postgres
    store = PostgresStore(settings.store.url)
    try:
        counts = {c.process: c for c in store.counts()}
    finally:
        store.close()
    on_pg = stored_alerts(settings)
    with running(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        scraped = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(http.get("/metrics").text)
                   for s in f.samples}
        assert scraped[("backlight_store_up", ())] == 1
        for name, count in counts.items():
            assert scraped[("backlight_store_events", (("process", name),))] == count.events
        assert sum(v for (n, _), v in scraped.items() if n == "backlight_alerts") == len(on_pg)
        rows = {r["name"]: r for r in http.get("/api/processes").json()}
        assert set(counts) <= set(rows)
        for name, count in counts.items():
            assert (rows[name]["events"], rows[name]["cases"]) == (count.events, count.cases)
        listed = http.get("/api/alerts").json()
        open_keys = {k for k, a in on_pg.items() if a.status.value != "resolved"}
        assert open_keys and {a["key"] for a in listed} >= open_keys
        key = sorted(open_keys)[0]
        ack = http.post(f"/api/alerts/{quote(key, safe='/')}/ack", headers=WRITE,
                        json={"note": "on it, from PG"})
        assert ack.status_code == 201, ack.text
        review = http.post("/api/processes/claims/review", headers=WRITE,
                           json={"note": "owner found"})
        assert review.status_code == 201, review.text
        shown = next(a for a in http.get("/api/alerts").json() if a["key"] == key)
        assert shown["acknowledged_by"] == "alice"
    state = open_alert_state(settings.store.url)
    try:
        got = state.acknowledgements()[key]
        latest = state.reviews("claims")[0]
    finally:
        state.close()
    assert (got.by, got.note) == ("alice", "on it, from PG")
    assert (latest.by, latest.note) == ("alice", "owner found")


def test_the_alert_tables_are_versioned_beside_the_store(stores: Stores,
                                                         evaluated: list[Alert]) -> None:
    """The PostgreSQL database records a schema version per component: events, alerts, outbox
    (and the read models, once the web app opened it, and the learned end activities, once an
    evaluation opened them); a database whose alert tables are newer than this code is
    refused."""
    url = stores.postgres.store.url
    with psycopg.connect(url, autocommit=True) as conn:
        versions = dict(conn.execute("SELECT component, version FROM schema_version").fetchall())
        assert {"events", "alerts", "outbox"} <= set(versions) <= {
            "events", "alerts", "outbox", "read_models", "end_activities"}
        assert min(versions.values()) >= 1
        conn.execute("UPDATE schema_version SET version = 99 WHERE component = 'alerts'")
        try:
            with pytest.raises(AlertStateError, match="schema version 99, newer") as refused:
                open_alert_state(url)
        finally:
            conn.execute("UPDATE schema_version SET version = %s WHERE component = 'alerts'",
                         (versions["alerts"],))
    assert "alerts" in str(refused.value)


def test_the_alert_commands_on_a_postgresql_store(postgres_url: str, tmp_path: Path) -> None:
    """`alerts run` posts the governance alerts of a PostgreSQL store to a real webhook,
    `review` records a review there and the next `alerts evaluate` resolves the stale
    alert; the database password never shows."""
    plain = fresh_database(postgres_url)
    url = plain.replace("postgresql://postgres@", "postgresql://postgres:pgSECRET9@")
    today = datetime.now(UTC).date()
    reviewed = date(today.year - 2, today.month, min(today.day, 28))  # 24 months ago
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[store]\nurl = "{url}"\n\n[alerts]\nresolve_after = "1 hour"\n\n'
                   '[[processes]]\nname = "stale"\nowner = "bob@example.com"\n'
                   f"last_reviewed = {reviewed.isoformat()}\n\n"
                   '[[processes]]\nname = "orphan"\n'
                   f"last_reviewed = {today.isoformat()}\n\n"
                   '[[channels]]\ntype = "webhook"\nname = "ops"\nurl = "${HOOK_URL}"\n')
    hook = Hook()
    proc = subprocess.Popen([sys.executable, "-m", "backlight", "alerts", "run", "--config",
                             str(cfg), "--every", "1 minute"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HOOK_URL": hook.url})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(hook.posts) < 2 and proc.poll() is None:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        hook.close()
    assert proc.returncode == 0, err
    assert sorted(str(body["process"]) for _, body in hook.posts) == ["orphan", "stale"]
    env = {"HOOK_URL": hook.url}
    done = backlight("review", "stale", "--config", str(cfg), "--by", "bob@example.com", env=env)
    assert "stale reviewed by bob@example.com" in done.stdout
    later = backlight("alerts", "evaluate", "--config", str(cfg), "--format", "json", "--now",
                      (datetime.now(UTC) + timedelta(hours=2)).isoformat(), env=env)
    statuses = {(a["rule"], a["process"]): a["status"] for a in json.loads(later.stdout)}
    assert statuses == {("stale_review", "stale"): "resolved", ("no_owner", "orphan"): "firing"}
    everything = out + err + done.stdout + done.stderr + later.stdout + later.stderr
    assert "pgSECRET9" not in everything
