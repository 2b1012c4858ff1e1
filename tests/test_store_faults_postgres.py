"""PostgreSQL faults a store error is made of, on a real server: a row refused for its content
is dead-lettered as ``store_rejected`` and the rest of its batch stored; a writer frozen with
SIGSTOP while holding the write lock delays another store's write by seconds (the session's
timeouts, from ``[store]``), not for as long as it stays frozen."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import structlog
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import TopicPartition
from conftest import ROOT
from pg import fresh_database

from alerts.errors import AlertStateError
from backlight.config import ConfigError, load
from ingest.consumer import Consumer, Prepared
from ingest.errors import StoreError
from ingest.rdkafka import RdKafkaSource, Record
from ingest.rdkafka_sink import RdKafkaSink
from ingest.store_writes import write_batch
from ingest.transport import ensure_topics
from schemas.decode import SourceSpec
from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import PostgresSession, ReadModelTables, open_alert_state, open_outbox, open_store
from storage.pg_events import PostgresStore

log = structlog.stdlib.get_logger("test.store_faults")
T0 = 1_770_000_000_000_000


def ev(i: int, resource: str = "u-1", time_us: int = T0) -> CaseEvent:
    return CaseEvent(f"e{i}", "claims", f"c{i % 3}", "Step", time_us + i, "complete", resource,
                     None, None)


@pytest.fixture()
def store_url(postgres_url: str) -> str:
    return fresh_database(postgres_url)


@pytest.mark.kafka
def test_a_row_postgres_refuses_is_dead_lettered_and_the_rest_of_the_batch_stored(
        kafka_bootstrap: str, store_url: str, unique: str) -> None:
    """In a batch of 12 going through the consumer's write path, PostgreSQL refuses two rows
    (a NUL in resource, a time beyond bigint): each arrives in <topic>.dlq unchanged, coded
    store_rejected with the database's reason and its source offset; the other 10 are
    stored once and reported new."""
    topic = f"pgrefuse.{unique}"
    ensure_topics(kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=1)
    store = PostgresStore(store_url)
    source = RdKafkaSource(kafka_bootstrap, f"g-{unique}", [topic])
    sink = RdKafkaSink(kafka_bootstrap)
    consumer = Consumer(source, sink, store, {topic: SourceSpec(topic, "claims")})
    events = [ev(i) for i in range(12)]
    events[3] = ev(3, resource="u\x00x")  # built directly: whatever the decode accepts
    events[8] = ev(8, time_us=2**70)
    records = [Record(topic, 0, i, b"k%d" % i, json.dumps({"n": i}).encode(), (("h", None),))
               for i in range(12)]
    prepared = Prepared(records, events=events, messages=list(records),
                        origins=[Coordinates(topic, 0, i) for i in range(12)],
                        next_offsets={(topic, 0): 12})
    try:
        new = consumer.write(prepared)
    finally:
        source.close()
        sink.close()
    assert new == [True] * 10
    assert [e.event_id for e in prepared.events] == [f"e{i}" for i in range(12) if i not in (3, 8)]
    assert dict(prepared.bad) == {"store_rejected": 2}
    assert [(c.events) for c in store.counts()] == [10]
    store.close()

    reader = RdConsumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"r-{unique}"})
    reader.assign([TopicPartition(f"{topic}.dlq", 0, 0)])
    letters = [m for m in reader.consume(10, 10) if m.error() is None]
    reader.close()
    by_offset = {int(dict(m.headers())["backlight.source.offset"]): m for m in letters}
    assert set(by_offset) == {3, 8}
    for offset, why in ((3, 'invalid byte sequence for encoding "UTF8": 0x00'),
                        (8, "bigint out of range")):
        letter = by_offset[offset]
        headers = dict(letter.headers())
        assert letter.value() == json.dumps({"n": offset}).encode()
        assert letter.key() == b"k%d" % offset
        assert headers["backlight.error.code"] == b"store_rejected"
        assert headers["backlight.error"].decode().startswith("store_rejected: ")
        assert why in headers["backlight.error"].decode()
        assert headers["h"] == b""


def test_store_settings_reach_every_postgres_session(tmp_path: Path, store_url: str) -> None:
    """[store] timeouts and keepalives from backlight.toml are what a store connection's
    session shows; a negative one is a config error naming the key."""
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[store]\nurl = "{store_url}"\nlock_timeout_s = 1.5\n'
                   "idle_in_transaction_timeout_s = 4\nstatement_timeout_s = 60\n"
                   "keepalives_idle_s = 7\ntcp_user_timeout_s = 20\n")
    settings = load(cfg, environ={})
    store = open_store(settings.store.url, settings.store.session())
    assert isinstance(store, PostgresStore)
    shown = dict(store._query("showing the session", "SELECT name, setting FROM pg_settings"
                              " WHERE name IN ('lock_timeout', 'statement_timeout',"
                              " 'idle_in_transaction_session_timeout', 'tcp_user_timeout')"))
    store.close()
    assert shown == {"lock_timeout": "1500", "statement_timeout": "60000",
                     "idle_in_transaction_session_timeout": "4000", "tcp_user_timeout": "20000"}
    cfg.write_text('[store]\nlock_timeout_s = -1\n')
    with pytest.raises(ConfigError, match=r"store\.lock_timeout_s"):
        load(cfg, environ={})


FROZEN_WRITER = textwrap.dedent("""
    import sys, time
    from storage import PostgresSession
    from storage.pg_events import _WRITE_LOCK, connect_postgres
    session = PostgresSession(lock_timeout_s=float(sys.argv[2]),
                              idle_in_transaction_s=float(sys.argv[3]))
    conn = connect_postgres(sys.argv[1], session=session)  # the store's own connection
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
        conn.execute("INSERT INTO events (event_id, process, case_id, activity, time_us,"
                     " lifecycle) VALUES ('frozen', 'claims', 'c', 'A', 0, 'complete')")
        print("holding the write lock", flush=True)
        time.sleep(3600)
""")


@pytest.fixture()
def frozen_writer(store_url: str) -> Iterator[tuple[subprocess.Popen[str], PostgresSession]]:
    """A process holding the store's write lock in a transaction, then frozen (SIGSTOP)."""
    PostgresStore(store_url).close()  # the schema
    session = PostgresSession(lock_timeout_s=2.0, idle_in_transaction_s=3.0)
    proc = subprocess.Popen([sys.executable, "-c", FROZEN_WRITER, store_url,
                             str(session.lock_timeout_s), str(session.idle_in_transaction_s)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "holding the write lock"
        proc.send_signal(signal.SIGSTOP)
        yield proc, session
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(30)


def test_a_writer_frozen_holding_the_write_lock_delays_another_by_seconds(
        store_url: str, frozen_writer: tuple[subprocess.Popen[str], PostgresSession]) -> None:
    """Another store's write of a batch, through the consumer's retrying write path, completes
    within the configured lock and idle-in-transaction timeouts (plus a retry's wait), not for
    as long as the frozen writer stays stopped; the frozen writer's uncommitted row is gone."""
    _, session = frozen_writer
    store = PostgresStore(store_url, session=session)
    events = [ev(i) for i in range(100)]
    started = time.monotonic()
    written = write_batch(store, events, [None] * 100, threading.Event(), log, waits=(0.5, 1.0))
    took = time.monotonic() - started
    assert written is not None and written.new == [True] * 100
    with psycopg.connect(store_url) as conn:
        ids = {r[0] for r in conn.execute("SELECT event_id FROM events")}
    store.close()
    assert ids == {e.event_id for e in events}
    print(f"write behind a frozen lock holder took {took:.1f}s (lock timeout "
          f"{session.lock_timeout_s}s, idle-in-transaction timeout {session.idle_in_transaction_s}s)")
    assert took < 60, "the write waited for the frozen writer (no hang allowed)"


def test_alert_state_outbox_and_read_models_give_up_on_a_held_lock(store_url: str) -> None:
    """With their tables locked by a transaction that never ends, the alert state, the outbox
    and the read models each fail within the session's lock timeout (1 s here), naming what
    they were doing, instead of waiting for as long as the lock is held."""
    session = PostgresSession(lock_timeout_s=1.0)
    state = open_alert_state(store_url, session)
    outbox = open_outbox(store_url, session)
    tables = ReadModelTables(store_url, session)
    holder = psycopg.connect(store_url)
    release = threading.Timer(30, holder.close)  # never hangs the test run for long
    release.start()
    try:
        holder.execute("LOCK TABLE alert_states, outbox, read_model_marks IN ACCESS EXCLUSIVE MODE")
        for doing, call, error in (("alert state", state.alerts, AlertStateError),
                                   ("outbox", outbox.depth, AlertStateError),
                                   ("read models", lambda: tables.mark("read-models"), StoreError)):
            started = time.monotonic()
            with pytest.raises(error, match="lock timeout"):
                call()
            assert time.monotonic() - started < 10, doing
    finally:
        release.cancel()
        holder.close()
        tables.close()
        outbox.close()
        state.close()
