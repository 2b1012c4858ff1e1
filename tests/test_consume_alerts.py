"""`backlight consume --alerts` on a real broker: alerts evaluated once caught up and delivered
to a real local webhook; a chat endpoint that hangs never stalls ingest."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import backlight, write_config

from backlight.config import load
from backlight.jobs import simulate

pytestmark = pytest.mark.kafka


class Endpoint:
    """A real local HTTP server standing in for a chat webhook; with ``hang`` it answers
    nothing until the test ends (``release``)."""

    def __init__(self, hang: bool) -> None:
        self.received: list[dict[str, object]] = []
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hang:
                    outer.released.wait()
                outer.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture()
def endpoints() -> Iterator[list[Endpoint]]:
    """Endpoints made by a test, shut down after it."""
    made: list[Endpoint] = []
    yield made
    for endpoint in made:
        endpoint.released.set()
        endpoint.server.shutdown()
        endpoint.server.server_close()


def setup(tmp_path: Path, bootstrap: str, unique: str, url: str) -> tuple[Path, int]:
    """A claims source without an owner (so `no_owner` fires) and one webhook channel with a
    2 s timeout; 80 simulated claims cases published. Returns the config and the event count."""
    db = tmp_path / "s.db"
    extra = ('[[processes]]\nname = "claims"\nlast_reviewed = 2026-11-01\n'
             'end_activities = ["Close claim"]\n\n'
             f'[[channels]]\ntype = "webhook"\nname = "ops"\nurl = "{url}"\ntimeout_s = 2\n')
    cfg = write_config(tmp_path / "b.toml", bootstrap, db, [(f"claims.{unique}", "claims")],
                       f"g-{unique}", extra=extra)
    published = simulate(load(cfg), ["claims"], 80, seed=2)
    return cfg, published["claims"][0]


def outbox(db: Path) -> list[tuple[str, str]]:
    """(process, status) of each queued notification."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT process, status FROM outbox ORDER BY seq").fetchall()


def test_consume_with_alerts_delivers_once_caught_up(tmp_path: Path, kafka_bootstrap: str,
                                                     unique: str,
                                                     endpoints: list[Endpoint]) -> None:
    """Every event is stored, and the ownerless process's alert reaches the webhook."""
    endpoints.append(Endpoint(hang=False))
    cfg, produced = setup(tmp_path, kafka_bootstrap, unique, endpoints[0].url)
    out = backlight("consume", "--alerts", "--config", str(cfg), "--exit-when-idle", "4")
    assert f"{produced} stored" in out.stdout
    assert [b["process"] for b in endpoints[0].received] == ["claims"]
    assert outbox(tmp_path / "s.db") == [("claims", "sent")]


def test_a_hanging_chat_endpoint_never_stalls_ingest(tmp_path: Path, kafka_bootstrap: str,
                                                     unique: str,
                                                     endpoints: list[Endpoint]) -> None:
    """With the webhook never answering (until the test ends), the consumer still stores every
    event and exits once caught up (were it waiting on the webhook, it would never exit); the
    notification waits in the outbox for the next round."""
    endpoints.append(Endpoint(hang=True))
    cfg, produced = setup(tmp_path, kafka_bootstrap, unique, endpoints[0].url)
    out = backlight("consume", "--alerts", "--config", str(cfg), "--exit-when-idle", "2")
    assert f"{produced} stored" in out.stdout
    assert outbox(tmp_path / "s.db") == [("claims", "pending")]
    assert endpoints[0].received == []
