"""`backlight doctor` on real parts: a real broker, real SQLite files, a real HTTP server, and
closed local ports for what is down. It names each fault it is shown and says what to do."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import backlight, write_config
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from alerts.channels import ChannelSettings
from backlight.config import KafkaSettings
from backlight.doctor import (
    Finding,
    check_broker,
    check_channel,
    check_kafka_channel,
    check_store,
    render_text,
)
from ingest.transport import ensure_topics
from storage import open_store
from storage.migrations import SQLITE, expected

pytestmark = pytest.mark.kafka
SECRET_PATH = "/services/T000/B000/s3cr3t-webhook-token"


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


class CountingServer(ThreadingHTTPServer):
    """A real HTTP server that counts the connections it accepts and the requests it gets."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def _count(self) -> None:
                outer.requests += 1
                self.send_response(200)
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_PUT = _count

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture()
def http_server() -> Iterator[CountingServer]:
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def topics(kafka_bootstrap: str) -> dict[str, str]:
    """Topics made for this module: a source with its DLQ, a source without one, an alerts
    topic; three messages on the first source's partition 0."""
    tag = f"doctor-{time.monotonic_ns() % 10**9}"
    names = {"source": f"{tag}.events", "bare": f"{tag}.bare", "alerts": f"{tag}.alerts"}
    ensure_topics(kafka_bootstrap, [names["source"], f"{names['source']}.dlq", names["bare"],
                                    names["alerts"]], partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(3):
        producer.send(names["source"], f"m{i}".encode(), partition=0)
    producer.flush()
    producer.close()
    return names


def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit the group's offsets on a topic, as a consumer of the group would."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p) for p in offsets])
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                         for p, o in offsets.items()})
    finally:
        consumer.close(autocommit=False)


def test_healthy_deployment_is_all_ok(kafka_bootstrap: str, topics: dict[str, str],
                                      tmp_path: Path, http_server: CountingServer) -> None:
    """A working deployment: every check OK, the group's lag counted, exit 0, nothing sent."""
    group = f"g-{topics['source']}"
    commit(kafka_bootstrap, group, topics["source"], {0: 1, 1: 0, 2: 0})
    db = tmp_path / "store.db"
    open_store(f"sqlite:///{db}").close()
    url = f"http://127.0.0.1:{http_server.port}{SECRET_PATH}?token=hush"
    extra = (f'[[channels]]\ntype = "slack"\nname = "ops-slack"\nurl = "{url}"\n\n'
             f'[[channels]]\ntype = "kafka"\nname = "alert-events"\ntopic = "{topics["alerts"]}"\n')
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, db, [(topics["source"], "claims")],
                       group, extra)
    proc = backlight("doctor", "--config", str(cfg), "--format", "json", "--timeout", "10",
                     check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    findings = json.loads(proc.stdout)
    assert [f["check"] for f in findings] == [
        "config", "broker", f"topic {topics['source']}", f"topic {topics['source']}.dlq",
        "store", "store schema", "store writable", "channel ops-slack", "channel alert-events"]
    assert {f["status"] for f in findings} == {"OK"}, findings
    assert all(set(f) == {"check", "status", "detail", "hint"} for f in findings)
    source = by_check([Finding(**f) for f in findings])[f"topic {topics['source']}"]
    assert "3 partitions" in source.detail and "lag 2 messages" in source.detail
    assert "127.0.0.1" in by_check([Finding(**f) for f in findings])["channel ops-slack"].detail
    assert SECRET_PATH not in proc.stdout + proc.stderr and "hush" not in proc.stdout + proc.stderr
    assert http_server.connections == 1 and http_server.requests == 0


def test_wrong_bootstrap_and_closed_database_fail_in_the_cli(tmp_path: Path) -> None:
    """The CLI names a dead broker and an unreachable PostgreSQL store, exits 1, and never
    prints the database password."""
    password = "pw-never-shown-42"
    cfg = write_config(tmp_path / "b.toml", f"127.0.0.1:{closed_port()}", tmp_path / "unused.db",
                       [("orders.events", "orders")], "g-doctor")
    cfg.write_text(cfg.read_text().replace(
        f'url = "sqlite:///{tmp_path / "unused.db"}"',
        f'url = "postgresql://backlight:{password}@127.0.0.1:{closed_port()}/backlight"'))
    proc = backlight("doctor", "--config", str(cfg), "--timeout", "2", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    broker = next(line for line in lines if " broker " in line)
    assert broker.split()[0] == "FAIL" and "no Kafka broker answered" in broker
    store = next(line for line in lines if " store " in line)
    assert store.split()[0] == "FAIL" and "unreachable" in store and "backlight:***@" in store
    assert password not in proc.stdout + proc.stderr
    assert "FAIL: something is wrong" in lines[-1]


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    """A config that does not load is the config check's failure: exit 2 naming the key."""
    cfg = tmp_path / "b.toml"
    cfg.write_text('[kafka]\nbatch_size = "many"\n')
    proc = backlight("doctor", "--config", str(cfg), check=False)
    assert proc.returncode == 2 and "kafka.batch_size" in proc.stderr


def test_wrong_bootstrap_fails_within_the_timeout() -> None:
    """A bootstrap address where nothing listens fails the broker check, bounded by the timeout."""
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}")
    started = time.monotonic()
    report = check_broker(kafka, ["orders.events"], timeout_s=1.5)
    took = time.monotonic() - started
    assert [(f.check, f.status) for f in report.findings] == [("broker", "FAIL")]
    assert kafka.bootstrap_servers in report.findings[0].detail
    assert report.partitions is None
    assert took < 1.5 + 8.0, f"took {took:.1f} s"  # not a hang (kafka-python's default: 40 s)


def test_missing_dlq_topic_is_named(kafka_bootstrap: str, topics: dict[str, str]) -> None:
    """A source topic without its <topic>.dlq: FAIL naming the DLQ, saying how to create it."""
    for create in (True, False):
        kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, group_id="g-none",
                              create_topics=create)
        found = by_check(check_broker(kafka, [topics["bare"]], timeout_s=10).findings)
        dlq = found[f"topic {topics['bare']}.dlq"]
        assert dlq.status == "FAIL" and "missing" in dlq.detail
        assert dlq.hint is not None and "backlight consume" in dlq.hint
        assert ("set kafka.create_topics = true" in dlq.hint) is not create
        bare = found[f"topic {topics['bare']}"]
        assert bare.status == "WARN" and "no offsets" in bare.detail  # never consumed by g-none


def test_missing_source_and_alert_topics_fail(kafka_bootstrap: str, topics: dict[str, str]) -> None:
    """A source topic that does not exist, and a Kafka channel's missing topic, each FAIL."""
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    absent = f"{topics['source']}.absent"
    report = check_broker(kafka, [absent], timeout_s=10, other_topics=[topics["alerts"], absent])
    found = by_check(report.findings)
    assert found[f"topic {absent}"].status == "FAIL"
    assert found[f"topic {absent}.dlq"].status == "FAIL"
    ok = check_kafka_channel(ChannelSettings(type="kafka", name="tickets", topic=topics["alerts"]),
                             report.partitions)
    gone = check_kafka_channel(ChannelSettings(type="kafka", name="tickets", topic=absent),
                               report.partitions)
    assert (ok.status, gone.status) == ("OK", "FAIL")
    assert absent in gone.detail and gone.check == "channel tickets"


def test_store_that_cannot_be_created_fails(tmp_path: Path) -> None:
    """A SQLite path under a regular file (its directory cannot exist) fails the store check."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    findings = check_store(f"sqlite:///{blocker}/sub/store.db")
    assert [(f.check, f.status) for f in findings] == [("store", "FAIL")]
    assert str(blocker) in findings[0].detail


def test_unreachable_postgres_store_fails_with_password_masked() -> None:
    """A PostgreSQL URL to a closed port: FAIL, the URL shown with its password masked."""
    password = "Sup3r$ecret"
    url = f"postgresql://ops:{password}@127.0.0.1:{closed_port()}/events"
    findings = check_store(url)
    assert [(f.check, f.status) for f in findings] == [("store", "FAIL")]
    assert "unreachable" in findings[0].detail and "ops:***@127.0.0.1" in findings[0].detail
    assert password not in json.dumps([f.__dict__ for f in findings])


def _set_version(db: Path, version: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = ? WHERE component = 'events'",
                     (version,))


def test_newer_schema_version_fails_naming_both_versions(tmp_path: Path) -> None:
    """A store written by a newer Backlight: FAIL naming its version and the expected one."""
    db = tmp_path / "store.db"
    open_store(f"sqlite:///{db}").close()
    want = expected(SQLITE)
    _set_version(db, want + 3)
    found = by_check(check_store(f"sqlite:///{db}"))
    schema = found["store schema"]
    assert schema.status == "FAIL"
    assert f"schema version {want + 3}" in schema.detail and f"({want})" in schema.detail
    assert schema.hint is not None and "upgrade Backlight" in schema.hint
    assert found["store"].status == "OK"


def test_older_schema_version_warns_it_will_be_migrated(tmp_path: Path) -> None:
    """A store at an older schema version: WARN, it is migrated at the next consume."""
    db = tmp_path / "store.db"
    open_store(f"sqlite:///{db}").close()
    want = expected(SQLITE)
    _set_version(db, want - 1)
    schema = by_check(check_store(f"sqlite:///{db}"))["store schema"]
    assert schema.status == "WARN" and f"version {want - 1}" in schema.detail
    assert schema.hint is not None and "migrated at the next consume" in schema.hint


def test_refusing_chat_endpoint_fails_naming_the_channel() -> None:
    """A webhook whose host refuses connections: FAIL naming the channel, type and host only."""
    port = closed_port()
    channel = ChannelSettings(type="mattermost", name="ops-chat",
                              url=f"http://127.0.0.1:{port}{SECRET_PATH}?token=hush")
    finding = check_channel(channel, timeout_s=3)
    assert (finding.check, finding.status) == ("channel ops-chat", "FAIL")
    assert "mattermost" in finding.detail and f"127.0.0.1:{port}" in finding.detail
    text = render_text([finding], "test")
    assert SECRET_PATH not in text and "hush" not in text and "s3cr3t" not in text


def test_reachable_chat_endpoint_is_ok_and_receives_nothing(http_server: CountingServer) -> None:
    """A live webhook host: OK; it accepted the connection but got no request at all."""
    channel = ChannelSettings(type="webhook", name="tickets",
                              url=f"http://127.0.0.1:{http_server.port}{SECRET_PATH}")
    finding = check_channel(channel, timeout_s=5)
    assert finding.status == "OK", finding
    time.sleep(0.2)  # let the server's handler see the closed connection
    assert http_server.connections == 1 and http_server.requests == 0


def test_https_endpoint_that_does_not_speak_tls_fails(http_server: CountingServer) -> None:
    """An https URL whose host answers plain HTTP: the TLS handshake fails and says so."""
    channel = ChannelSettings(type="teams", name="mgmt",
                              url=f"https://127.0.0.1:{http_server.port}{SECRET_PATH}")
    finding = check_channel(channel, timeout_s=5)
    assert finding.status == "FAIL" and "TLS handshake failed" in finding.detail
    assert http_server.requests == 0


def test_silent_tls_endpoint_fails_within_the_timeout() -> None:
    """An https host that accepts the connection but never answers the handshake: FAIL once the
    timeout has passed, not a hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the TCP handshake; nobody ever replies
        port = listener.getsockname()[1]
        channel = ChannelSettings(type="googlechat", name="room",
                                  url=f"https://127.0.0.1:{port}/v1/spaces/x?key=k")
        started = time.monotonic()
        finding = check_channel(channel, timeout_s=1.0)
        took = time.monotonic() - started
    assert finding.status == "FAIL" and "no answer within 1 s" in finding.detail
    assert 0.9 <= took < 8.0, f"took {took:.1f} s"  # waited for the timeout, did not hang
