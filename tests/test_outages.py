"""Outages under running `backlight consume --metrics-port` processes, on real parts: the
Kafka broker stopped for 15 s mid-stream under a consumer group sharing a PostgreSQL store,
and the PostgreSQL server restarted mid-stream under a consumer. Events keep being published
through both; afterwards the store holds each one exactly once, the consumers' stored
counters add up to the published set, and /readyz reported each outage while it lasted.

Run with ``-s`` to see the measured timeline of each outage (noisy on a loaded machine: the
only timed assertions are generous "no hang" deadlines)."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from broker_support import own_broker, relaunch  # noqa: F401 (own_broker: a fixture)
from conftest import write_config
from consume_support import SESSION_TIMEOUT_S, Running, consuming, event, total, wait_for
from pg import Cluster, cluster, fresh_database

from ingest.broker import BrokerState, LocalBroker
from ingest.consumer import dead_letter_topic
from ingest.transport import KafkaSink, ensure_topics

OUTAGE_S = 15.0  # at least: over twice the 6 s session timeout, and every /readyz 503 in it
UNREADY_S = 28.0  # how long the consumers may take to report the broker gone
SIGTERM_MARGIN_S = 8.0  # over the session timeout: a loaded machine, not a hang
FINAL = re.compile(r"consumed (\d+) messages: (\d+) stored, (\d+) already stored, "
                   r"(\d+) dead-lettered")


def case_key(i: int) -> bytes:
    """The key of ``event(tag, i)``: its case id (test_consume_ops's events have 17 cases)."""
    return f"c-{i % 17}".encode()


class Producer:
    """Publishes ``event(tag, i)`` for i = 0, 1, 2, ... keyed by case id, ``per_second`` a
    second on a thread of its own, until ``finish``. Sends while the broker is away wait in
    the producer's buffer and go out when it is back (their delivery timeout outlasts the
    outage), so the published set is exactly ``tag-0 .. tag-(sent-1)``."""

    def __init__(self, bootstrap: str, topic: str, tag: str, per_second: float) -> None:
        self.topic, self.tag, self.interval = topic, tag, 1.0 / per_second
        self.sent = 0
        self._sink = KafkaSink(bootstrap, client_id=f"outage-producer-{tag}",
                               delivery_timeout_ms=900_000, max_block_ms=900_000)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outage-producer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._halt.is_set():
            self._sink.send(self.topic, event(self.tag, self.sent), key=case_key(self.sent))
            self.sent += 1
            next_at += self.interval
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def finish(self) -> list[str]:
        """Stop sending, wait until the broker has every event; the published ids."""
        self._halt.set()
        self._thread.join(30)
        self._sink.flush(600)
        self._sink.close()
        return [f"{self.tag}-{i}" for i in range(self.sent)]

    def close(self) -> None:
        self._halt.set()
        self._thread.join(30)


def stored_ids(url: str) -> list[str]:
    with psycopg.connect(url, connect_timeout=10) as conn:
        return [row[0] for row in conn.execute("SELECT event_id FROM events")]


def count_stored(url: str) -> int:
    """Events in the store, or -1 while it cannot be reached."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
    except psycopg.Error:
        return -1
    return int(row[0]) if row else 0


def final_counts(consumer: Running) -> dict[str, int]:
    """The totals an exited consumer printed on stdout."""
    stdout = consumer.proc.stdout.read() if consumer.proc.stdout else ""
    found = FINAL.search(stdout)
    assert found, f"no final line on stdout: {stdout!r}\n" + "".join(consumer.lines[-40:])
    return dict(zip(("consumed", "stored", "duplicates", "dead_letters"),
                    map(int, found.groups()), strict=True))


def counters(consumer: Running) -> dict[str, int]:
    """The same totals from a running consumer's /metrics."""
    samples = consumer.scrape()
    return {"consumed": int(total(samples, "backlight_events_consumed_total")),
            "stored": int(total(samples, "backlight_events_stored_total")),
            "duplicates": int(total(samples, "backlight_events_duplicate_total")),
            "dead_letters": int(total(samples, "backlight_dead_letters_total"))}


def ready(consumer: Running) -> httpx.Response:
    """/readyz; a consumer whose port refuses is given a moment to exit, and the test then
    fails with its exit code and stderr (Running.get alone may catch it still exiting)."""
    try:
        return consumer.ready()
    except httpx.TransportError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            consumer.proc.wait(10)
        alive(consumer)
        raise


def stall_report(consumer: Running) -> str:
    """What a consumer that does not answer as expected is doing: its /readyz, where each of
    its threads is (py-spy, where installed), and its last log lines (without the noise of
    kafka-python's reconnects)."""
    try:
        body = consumer.ready().text
    except httpx.TransportError as exc:
        body = f"/readyz unreachable: {exc!r}"
    stacks = ""
    if shutil.which("py-spy"):
        stacks = subprocess.run(["py-spy", "dump", "--pid", str(consumer.proc.pid)],
                                capture_output=True, text=True, timeout=60).stdout
    lines = [line for line in consumer.lines if "logger=kafka." not in line][-60:]
    return f"/readyz: {body}\n{stacks}" + "".join(lines)


def alive(*consumers: Running) -> None:
    for c in consumers:
        assert c.proc.poll() is None, (f"a consumer exited {c.proc.returncode}:\n"
                                       + "".join(c.lines[-60:]))


@pytest.mark.kafka
def test_broker_stopped_15s_mid_stream_group_resumes_nothing_lost_or_twice(
        tmp_path: Path, own_broker: tuple[LocalBroker, BrokerState],  # noqa: F811
        postgres_url: str, unique: str) -> None:
    """Three consumers in one group on a 6-partition topic and a PostgreSQL store; the broker
    stopped for at least 15 s while events are published throughout: every consumer's /readyz
    turns 503 ("unavailable") during the outage; one SIGTERM'd while the broker is down exits 0
    within the session timeout (plus a margin); the other two turn ready again by themselves
    (and exit 0 as promptly on SIGTERM afterwards); the store holds every published event
    exactly once and the stored counters add up to them."""
    broker, state = own_broker
    topic = f"outage-broker.{unique}"
    ensure_topics(state.bootstrap, [topic, dead_letter_topic(topic)], partitions=6)
    url = fresh_database(postgres_url)
    cfg = write_config(tmp_path / "b.toml", state.bootstrap, url, [(topic, "claims")],
                       f"g-{unique}")
    timeline: dict[str, Any] = {}
    with ExitStack() as stack:
        group = [stack.enter_context(consuming(cfg)) for _ in range(3)]
        *stay, leaving = group
        producer = Producer(state.bootstrap, topic, unique, per_second=40)
        stack.callback(producer.close)
        wait_for(lambda: all(ready(c).status_code == 200 for c in group)
                 and count_stored(url) >= 200, 180, "the group ready and storing")
        alive(*group)

        assert broker.stop()
        down = time.monotonic()
        timeline["sent_before"] = producer.sent
        unready: dict[int, float] = {}

        def all_unready() -> bool:
            for n, c in enumerate(group):
                if n not in unready and ready(c).status_code == 503:
                    unready[n] = round(time.monotonic() - down, 1)
            return len(unready) == len(group)

        wait_for(all_unready, UNREADY_S, "every consumer's /readyz 503 with the broker down")
        timeline["unready_after_s"] = [unready[n] for n in range(len(group))]
        during = ready(stay[0]).json()
        timeline["status"], timeline["reason"] = during.get("status"), during.get("reason")
        try:
            timeline["sigterm_s"] = round(leaving.sigterm(), 1)
        except subprocess.TimeoutExpired:
            raise AssertionError("SIGTERM unheard:\n" + stall_report(leaving)) from None
        assert leaving.proc.returncode == 0, "".join(leaving.lines[-60:])
        left = final_counts(leaving)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
        alive(*stay)  # no consumer gave up during the outage

        relaunch(broker, state)
        up = time.monotonic()
        timeline["outage_s"] = round(up - down, 1)
        timeline["sent_during"] = producer.sent - timeline["sent_before"]
        ready_again: dict[int, float] = {}

        def all_ready() -> bool:
            for n, c in enumerate(stay):
                if n not in ready_again and ready(c).status_code == 200:
                    ready_again[n] = round(time.monotonic() - up, 1)
            return len(ready_again) == len(stay)

        try:
            wait_for(all_ready, 300, "both remaining consumers ready again after the restart")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + "\n".join(
                f"consumer {n}: {stall_report(c)}" for n, c in enumerate(stay))) from None
        timeline["ready_again_s"] = [ready_again[n] for n in range(len(stay))]
        target = producer.sent + 200
        wait_for(lambda: count_stored(url) >= target, 300,
                 "events published after the restart stored")
        published = producer.finish()
        wait_for(lambda: count_stored(url) == len(published)
                 and sum(counters(c)["stored"] for c in stay) + left["stored"] >= len(published),
                 300, "every published event stored and counted")
        timeline["caught_up_s"] = round(time.monotonic() - up, 1)
        alive(*stay)
        each = [counters(c) for c in stay]
        took = [c.sigterm() for c in stay]
    ids = stored_ids(url)
    print(f"\nbroker outage: {len(published)} events published, {timeline['sent_before']} "
          f"before the stop and {timeline['sent_during']} while the broker was down; timeline "
          f"{timeline}; per consumer (the SIGTERM'd one last) "
          f"{[*each, left]}; SIGTERM after the restart took {[round(t, 1) for t in took]} s")
    assert timeline["sigterm_s"] < SESSION_TIMEOUT_S + SIGTERM_MARGIN_S
    assert [c.proc.returncode for c in stay] == [0, 0]
    assert max(took) < SESSION_TIMEOUT_S + SIGTERM_MARGIN_S
    assert timeline["status"] == "unavailable"
    assert "no report from the consumer" in timeline["reason"]
    assert len(ids) == len(set(ids)) == len(published)
    assert set(ids) == set(published)
    assert sum(e["stored"] for e in each) + left["stored"] == len(published)
    assert sum(e["dead_letters"] for e in each) + left["dead_letters"] == 0


@pytest.fixture()
def own_postgres() -> Iterator[Cluster]:
    """A PostgreSQL cluster for this test only (the session's shared one is never stopped)."""
    with cluster() as own:
        yield own


@pytest.mark.kafka
def test_postgresql_restarted_mid_stream_batch_retried_nothing_lost_or_twice(
        tmp_path: Path, kafka_bootstrap: str, own_postgres: Cluster, unique: str) -> None:
    """PostgreSQL stopped and started again while events are published: /readyz is 503 naming
    the store while it is down; the consumer stays up, stores by itself again afterwards, and
    the store holds every published event exactly once, the stored counter equal to them,
    nothing dead-lettered."""
    topic = f"outage-pg.{unique}"
    ensure_topics(kafka_bootstrap, [topic, dead_letter_topic(topic)], partitions=3)
    url = fresh_database(own_postgres.url)
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, url, [(topic, "claims")],
                       f"g-{unique}")
    timeline: dict[str, Any] = {}
    with ExitStack() as stack:
        consumer = stack.enter_context(consuming(cfg))
        producer = Producer(kafka_bootstrap, topic, unique, per_second=100)
        stack.callback(producer.close)
        wait_for(lambda: ready(consumer).status_code == 200 and count_stored(url) >= 300, 180,
                 "the consumer ready and storing")

        stored_before = count_stored(url)
        own_postgres.stop("fast")
        down = time.monotonic()
        timeline["unready_after_s"] = round(wait_for(
            lambda: ready(consumer).status_code == 503, 30, "/readyz 503 with the store down"), 1)
        during = ready(consumer).json()
        time.sleep(max(0.0, 5.0 - (time.monotonic() - down)))
        sent_while_down = producer.sent
        alive(consumer)
        own_postgres.start()
        up = time.monotonic()
        timeline["outage_s"] = round(up - down, 1)
        timeline["ready_again_s"] = round(wait_for(
            lambda: ready(consumer).status_code == 200, 120, "/readyz 200 again"), 1)
        target = sent_while_down + 300
        wait_for(lambda: count_stored(url) >= target, 180,
                 "events published after the restart stored")
        timeline["storing_again_s"] = round(time.monotonic() - up, 1)
        published = producer.finish()
        wait_for(lambda: count_stored(url) == len(published)
                 and counters(consumer)["stored"] >= len(published), 180,
                 "every published event stored and counted")
        alive(consumer)
        figures = counters(consumer)
        took = consumer.sigterm()
    ids = stored_ids(url)
    failed_writes = sum("writing" in line and "events at" in line for line in consumer.lines)
    print(f"\nPostgreSQL restart: {len(published)} events published, {stored_before} stored "
          f"before the stop, {sent_while_down} sent by the time it started again; timeline "
          f"{timeline}; counters {figures}; store writes that failed (logged) {failed_writes}; "
          f"readiness while down {during}; SIGTERM {took:.1f} s")
    assert consumer.proc.returncode == 0, "".join(consumer.lines[-60:])
    assert during["status"] == "unavailable"
    assert during["reason"].startswith("the store cannot be read")
    assert len(ids) == len(set(ids)) == len(published)
    assert set(ids) == set(published)
    assert figures["stored"] == len(published)
    assert figures["dead_letters"] == 0
