"""`backlight consume --metrics-port` as an ops engineer runs it: a real consumer process on a
real broker serves /metrics, /healthz and /readyz; its counters equal a known ingest, it is
ready once caught up, not ready while the store cannot be read (and ready again after), and
SIGTERM ends it with 0 and closes the port. Not ready while the broker is away, and ready again
after by itself: the consumer's part on the test transport in memory
(tests/test_consumer_memory.py), the real outage under running `backlight consume --metrics-port`
processes in tests/test_outages.py."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import read_store, write_config
from consume_support import SESSION_TIMEOUT_S, consuming, event, total, wait_for

from ingest.transport import KafkaSink, ensure_topics

pytestmark = pytest.mark.kafka
VALID, RESENT = 120, 9
BAD = {"invalid_json": 4, "missing_field": 3}


def publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    sink = KafkaSink(bootstrap)
    for n, value in enumerate(values):
        sink.send(topic, value, key=str(n).encode())
    sink.flush()
    sink.close()


def known_set(tag: str) -> list[bytes]:
    """VALID events, RESENT of them again, and BAD malformed messages by reason."""
    valid = [event(tag, i) for i in range(VALID)]
    broken = [b'{"event_id": "broken' + str(i).encode() for i in range(BAD["invalid_json"])]
    missing = [json.dumps({"event_id": f"{tag}-m{i}", "case_id": "c"}).encode()
               for i in range(BAD["missing_field"])]
    return valid + valid[:RESENT] + broken + missing


def port_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) != 0


def stored_ids(db: Path) -> list[str]:
    """The stored event ids so far (none before the consumer created its store)."""
    return [row[0] for row in read_store(db, "SELECT event_id FROM events")]


def test_metrics_equal_a_known_ingest_ready_when_caught_up_and_sigterm_exits_0(
        tmp_path: Path, kafka_bootstrap: str, unique: str) -> None:
    """After a known ingest, /metrics counts exactly it (consumed, stored, duplicates, dead
    letters by reason, lag 0 on every partition, a last commit time), /readyz is 200 with lag
    0, and SIGTERM ends the consumer with 0 within the session timeout, its port closed."""
    topic = f"ops.{unique}"
    ensure_topics(kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=3)
    values = known_set(unique)
    publish(kafka_bootstrap, topic, values)
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, tmp_path / "s.db",
                       [(topic, "claims")], f"g-{unique}")
    started = time.time()
    with consuming(cfg) as consumer:
        url = consumer.url
        wait_for(lambda: total(consumer.scrape(), "backlight_events_consumed_total") == len(values)
                 and consumer.ready().json().get("lag") == 0, 120, "all consumed, ready, lag 0")
        readiness = consumer.ready().json()
        samples = consumer.scrape()
        health = consumer.get("/healthz")
        took = consumer.sigterm()
        stdout = consumer.proc.stdout.read() if consumer.proc.stdout else ""
    assert consumer.proc.returncode == 0, "".join(consumer.lines)
    assert took < SESSION_TIMEOUT_S
    assert port_closed(url)
    assert readiness["status"] == "ready" and readiness["consumer"] == "running"
    assert health.status_code == 200
    assert samples["backlight_events_consumed_total"] == {(("topic", topic),): len(values)}
    assert samples["backlight_events_stored_total"] == {(("topic", topic),): VALID}
    assert samples["backlight_events_duplicate_total"] == {(("topic", topic),): RESENT}
    assert {dict(k)["reason"]: v for k, v in samples["backlight_dead_letters_total"].items()
            } == BAD
    assert samples["backlight_consumer_lag"] == {
        (("partition", str(p)), ("topic", topic)): 0 for p in range(3)}
    (last_commit,) = samples["backlight_last_commit_timestamp_seconds"].values()
    assert started <= last_commit <= time.time()
    assert samples["backlight_store_up"] == {(): 1}
    assert total(samples, "backlight_store_read_seconds_count") >= 1
    assert sorted(stored_ids(tmp_path / "s.db")) == sorted(f"{unique}-{i}" for i in range(VALID))
    assert f"consumed {len(values)} messages: {VALID} stored" in stdout


def test_not_ready_while_the_store_cannot_be_read(tmp_path: Path, kafka_bootstrap: str,
                                                  unique: str) -> None:
    """With the events table renamed away by another program, /readyz is 503 naming the
    store and /metrics says backlight_store_up 0; with it back, 200 again."""
    topic = f"ops-store.{unique}"
    ensure_topics(kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=1)
    publish(kafka_bootstrap, topic, [event(unique, i) for i in range(10)])
    db = tmp_path / "s.db"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, db, [(topic, "claims")],
                       f"g-{unique}")
    with consuming(cfg) as consumer:
        wait_for(lambda: consumer.ready().status_code == 200, 120, "ready")
        with sqlite3.connect(db, isolation_level=None) as other:
            other.execute("ALTER TABLE events RENAME TO events_elsewhere")
        away = consumer.ready()
        away_up = consumer.scrape()["backlight_store_up"]
        with sqlite3.connect(db, isolation_level=None) as other:
            other.execute("ALTER TABLE events_elsewhere RENAME TO events")
        back = consumer.ready()
        assert consumer.sigterm() < SESSION_TIMEOUT_S
    assert consumer.proc.returncode == 0, "".join(consumer.lines)
    assert away.status_code == 503
    assert away.json()["reason"].startswith("the store cannot be read")
    assert "no such table: events" in away.json()["reason"]
    assert away_up == {(): 0}
    assert back.status_code == 200 and back.json()["lag"] == 0
