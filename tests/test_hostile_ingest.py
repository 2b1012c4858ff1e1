"""Hostile input end to end on real parts: a corpus of every hostile class of issue 14 mixed
with valid events, published to a real broker and consumed by `backlight consume` into SQLite
and into PostgreSQL. The consumer never stops; every valid event is stored once; every message
is stored, dead-lettered with its reason code, or a tombstone (counted by source offset); then
`backlight mine` and the web app (a real server over HTTP) answer with strict JSON and escaped
control characters."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from confluent_kafka import Producer
from conftest import backlight, write_config
from kafka import KafkaConsumer, TopicPartition
from pg import fresh_database

from backlight import alerting
from backlight.config import Settings, load
from backlight.web.server import running
from ingest.transport import ensure_topics
from schemas.decode import REASONS
from storage import open_store

pytestmark = pytest.mark.kafka
PROCESS = "claims"
PARTITIONS = 2
CASES = 40
"""Valid cases of three steps each, an hour apart, a case every 6 hours (10 days in all); the
two escape cases start first and stop after their second step: stuck cases, listed by id."""
START = datetime(2026, 3, 4, 8, tzinfo=UTC)
ESCAPE_CASE = "case-\x1b]0;pwned\x07\x1b[2J"
ESCAPE_ACTIVITY = "Check\x1b[31m\x07"
Headers = list[tuple[str, bytes | None]]


def strict_json(text: str) -> Any:
    """JSON as a strict parser reads it: NaN, Infinity and -Infinity are refused."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


@dataclass(frozen=True)
class Message:
    """One published message: its value and headers, and what must become of it: stored
    (``event_id``), dead-lettered with ``code``, or neither (a tombstone)."""

    label: str
    value: bytes | None
    headers: Headers
    code: str | None = None
    """The dead letter's ``backlight.error.code``; None: stored (or a tombstone)."""
    event_id: str | None = None
    """The id it is stored under (valid and hostile-but-valid messages)."""


def _event(event_id: str, case: str, activity: str, hour: int, **more: Any) -> dict[str, Any]:
    stamp = (START + timedelta(hours=hour)).isoformat()
    return {"event_id": event_id, "case_id": case, "activity": activity, "timestamp": stamp,
            "resource": "u-1", "team": "ops", **more}


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def valid_messages() -> list[Message]:
    """CASES cases Submit -> Check -> Approve, and two open cases with escape and bell
    sequences in their case id and activity (valid: stored, shown escaped)."""
    out: list[Message] = []
    for c in range(CASES):
        for i, activity in enumerate(("Submit", "Check", "Approve")):
            eid = f"ok-{c}-{i}"
            out.append(Message(eid, _dump(_event(eid, f"c-{c}", activity, 6 * c + i,
                                                 attributes={"amount": c * 10 + i})), [],
                               event_id=eid))
    for c, case in enumerate((ESCAPE_CASE, "case-bell\x07")):
        for i, activity in enumerate(("Submit", ESCAPE_ACTIVITY)):
            eid = f"esc-{c}-{i}"
            out.append(Message(eid, _dump(_event(eid, case, activity, i)), [], event_id=eid))
    return out


def hostile_messages() -> list[Message]:
    """One message (at least) of each hostile class of issue 14, with its expected fate."""
    base = _event("h", "c-h", "Submit", 3)
    out: list[Message] = []
    deep = _dump({**base, "event_id": "h-deep", "attributes": {"a": "["}}).replace(
        b'"["', b"[" * 1000 + b"]" * 1000)
    assert 2000 <= len(deep) < 2300
    out.append(Message("nested 1,000 [", deep, [], "too_deep"))
    for field in ("case_id", "activity", "resource", "team", "event_id", "process"):
        doc = {**base, "event_id": f"h-nul-{field}", field: "bad\x00value"}
        out.append(Message(f"NUL in {field}", _dump(doc), [], "invalid_character"))
    out.append(Message("NUL in an attribute", _dump(
        {**base, "event_id": "h-nul-attr", "attributes": {"note": "a\x00b"}}), [],
        "invalid_character"))
    for literal in ("NaN", "Infinity", "-Infinity"):
        text = _dump({**base, "event_id": f"h-{literal}", "attributes": {"x": "@"}})
        out.append(Message(literal, text.replace(b'"@"', literal.encode()), [],
                           "non_finite_number"))
    for n, stamp in enumerate(("9999-12-31T23:59:59-14:00", "9999-12-30T00:00:00Z",
                               "0001-01-01T00:00:00Z")):
        out.append(Message(f"time {stamp}", _dump({**base, "event_id": f"h-time-{n}",
                                                   "timestamp": stamp}), [],
                           "timestamp_out_of_range"))
    out.append(Message("bytes not UTF-8", bytes(range(128, 256)) * 4, [], "invalid_json"))
    out.append(Message("BOM", b"\xef\xbb\xbf" + _dump({**base, "event_id": "h-bom"}), [],
                       event_id="h-bom"))
    dup = _dump({**base, "event_id": "h-dup", "activity": "First"})[:-1] + b', "activity": "Check"}'
    out.append(Message("duplicate keys", dup, [], event_id="h-dup"))
    huge = _dump({**base, "event_id": "h-huge", "attributes": {"n": "@"}}).replace(
        b'"@"', str(10 ** 400).encode())
    out.append(Message("huge integer", huge, [], event_id="h-huge"))
    keys = _dump({**base, "event_id": "h-keys",
                  "attributes": {f"k{i:05d}": i for i in range(50_000)}})
    out.append(Message("50,000 keys", keys, [], "too_large"))
    out.append(Message("null header", b'{"event_id": "h-null-header", "case_id": ',
                       [("x-trace", None), ("x-ok", b"1")], "invalid_json"))
    out.append(Message("bad data_base64", _dump(
        {"specversion": "1.0", "id": "ce-1", "type": "t", "source": "s",
         "data_base64": "%%% not base64 %%%"}), [], "bad_cloudevent"))
    out.append(Message("data_base64 of no JSON", _dump(
        {"specversion": "1.0", "id": "ce-2", "type": "t", "source": "s",
         "data_base64": base64.b64encode(b"\xff\xfe[[[").decode()}), [], "bad_cloudevent"))
    out.append(Message("tombstone", None, []))
    assert {m.code for m in out} - {None} <= REASONS
    return out


def publish(bootstrap: str, topic: str, messages: list[Message]) -> dict[tuple[int, int], Message]:
    """Publish with librdkafka (which sends a null header value as Kafka allows); each
    message at its acknowledged (partition, offset)."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000,
                         "enable.idempotence": True})
    placed: dict[tuple[int, int], Message] = {}
    failed: list[str] = []

    def acked(message: Message) -> Any:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                failed.append(f"{message.label}: {err}")
            else:
                placed[(msg.partition(), msg.offset())] = message
        return report

    for n, message in enumerate(messages):
        producer.produce(topic, value=message.value, key=str(n).encode(),
                         headers=message.headers, on_delivery=acked(message))
        producer.poll(0)
    assert producer.flush(60) == 0, "not every message was acknowledged"
    assert not failed, failed
    assert len(placed) == len(messages)
    return placed


def dead_letters(bootstrap: str, topic: str) -> list[Any]:
    """Every letter in ``topic``: read from the start to each partition's end offset."""
    dlq = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                        fetch_max_bytes=5_000_000, max_partition_fetch_bytes=5_000_000)
    letters: list[Any] = []
    try:
        parts = [TopicPartition(topic, p) for p in sorted(dlq.partitions_for_topic(topic) or ())]
        dlq.assign(parts)
        dlq.seek_to_beginning(*parts)
        ends = dlq.end_offsets(parts)
        deadline = time.monotonic() + 60
        while any(dlq.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, "the dead-letter topic was not read to its end"
            for batch in dlq.poll(1000).values():
                letters.extend(batch)
    finally:
        dlq.close()
    return letters


def stored_rows(url: str) -> list[tuple[str, int, int]]:
    """(event_id, partition, offset) of every stored event."""
    sql = 'SELECT event_id, "partition", "offset" FROM events'
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return [tuple(r) for r in conn.execute(sql)]
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql)]


@dataclass(frozen=True)
class Ingested:
    url: str
    config: Path
    settings: Settings
    placed: dict[tuple[int, int], Message]
    letters: list[Any]
    stored: list[tuple[str, int, int]]
    consume: Any
    seconds: float


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ingested(request: pytest.FixtureRequest, kafka_bootstrap: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingested]:
    """The corpus published (valid and hostile shuffled together) and consumed once with
    `backlight consume --exit-when-idle` into a fresh store of the kind."""
    folder = tmp_path_factory.mktemp(f"hostile-ingest-{request.param}")
    url = (f"sqlite:///{folder / 'store.db'}" if request.param == "sqlite"
           else fresh_database(request.getfixturevalue("postgres_url")))
    topic = f"hostile.{request.param}.{folder.name}"
    ensure_topics(kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=PARTITIONS)
    valid, hostile = valid_messages(), hostile_messages()
    corpus = valid[:]
    for n, message in enumerate(hostile):  # spread among the valid ones
        corpus.insert((n * 7) % len(corpus), message)
    placed = publish(kafka_bootstrap, topic, corpus)
    config = write_config(folder / "backlight.toml", kafka_bootstrap, url,
                          [(topic, PROCESS)], f"g-{folder.name}")
    started = time.monotonic()
    consume = backlight("consume", "--config", str(config), "--exit-when-idle", "3",
                        timeout=300, check=False)
    seconds = time.monotonic() - started
    letters = dead_letters(kafka_bootstrap, f"{topic}.dlq")
    data = load(environ={}).model_dump(mode="python")
    data["store"]["url"] = url
    yield Ingested(url, config, Settings.model_validate(data), placed, letters,
                   stored_rows(url), consume, seconds)


def test_the_consumer_never_stops_and_exits_0_once_caught_up(ingested: Ingested) -> None:
    """`backlight consume --exit-when-idle` reads the whole hostile corpus and exits 0."""
    assert ingested.consume.returncode == 0, ingested.consume.stderr[-3000:]
    assert "Traceback" not in ingested.consume.stderr
    print(f"consume took {ingested.seconds:.1f}s for {len(ingested.placed)} messages")


def test_every_valid_event_is_stored_exactly_once(ingested: Ingested) -> None:
    """Every valid (and hostile-but-valid) event is in the store once, nothing else is."""
    counts = Counter(eid for eid, _, _ in ingested.stored)
    want = {m.event_id for m in ingested.placed.values() if m.event_id is not None}
    assert set(counts) == want
    assert max(counts.values()) == 1


def test_every_offset_is_stored_dead_lettered_or_a_tombstone(ingested: Ingested) -> None:
    """Stored offsets + dead-lettered offsets + tombstones == every published offset, each
    message where its class says (stored at its own offset, or a letter of its own)."""
    stored = {(p, o): eid for eid, p, o in ingested.stored}
    lettered: dict[tuple[int, int], str] = {}
    for letter in ingested.letters:
        h = dict(letter.headers)
        where = (int(h["backlight.source.partition"]), int(h["backlight.source.offset"]))
        assert where not in lettered, f"{where} dead-lettered twice"
        lettered[where] = h["backlight.error.code"].decode()
    tombstones = {k for k, m in ingested.placed.items() if m.value is None}
    assert len(lettered) == sum(m.code is not None for m in ingested.placed.values())
    assert not set(stored) & set(lettered) and not tombstones & (set(stored) | set(lettered))
    assert set(stored) | set(lettered) | tombstones == set(ingested.placed)
    for where, message in ingested.placed.items():
        if message.event_id is not None:
            assert stored.get(where) == message.event_id, message.label
        elif message.code is not None:
            assert lettered.get(where) == message.code, (message.label, lettered.get(where))


def test_dead_letters_are_the_messages_with_sanitised_headers(ingested: Ingested) -> None:
    """Each dead letter is the unchanged message; the null header value arrives as an empty
    one, the other headers unchanged, and the reason starts with its code."""
    by_offset = {(int(dict(m.headers)["backlight.source.partition"]),
                  int(dict(m.headers)["backlight.source.offset"])): m for m in ingested.letters}
    seen_null = False
    for where, letter in by_offset.items():
        message = ingested.placed[where]
        h = dict(letter.headers)
        assert h["backlight.error"].decode().startswith(h["backlight.error.code"].decode())
        assert "backlight.truncated" not in h, message.label  # none is near the topic's limit
        assert letter.value == message.value, message.label
        if message.label == "null header":
            assert h["x-trace"] == b"" and h["x-ok"] == b"1"
            seen_null = True
    assert seen_null


@pytest.mark.parametrize("fmt", ["json", "svg", "xes"])
def test_mine_answers_afterwards(ingested: Ingested, fmt: str) -> None:
    """`backlight mine` exits 0 in every format over the store: strict JSON, well-formed
    SVG/XES with the control characters shown as escapes."""
    out = backlight("mine", "--config", str(ingested.config), "--process", PROCESS,
                    "--format", fmt, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    if fmt == "json":
        doc = strict_json(out.stdout)
        assert doc["events"] == sum(1 for m in ingested.placed.values() if m.event_id)
    else:
        ET.fromstring(out.stdout.encode())
        assert "\x1b" not in out.stdout and "\x07" not in out.stdout
        assert "Check\\x1b[31m\\x07" in out.stdout


def test_pages_and_api_answer_afterwards(ingested: Ingested) -> None:
    """After an alert round: over HTTP, `/`, the process page, the API (strict JSON) and
    map.svg answer 200; the escape-sequence case id (listed stuck by the round) and activity are
    shown escaped, never as raw control bytes."""
    quoted = quote(PROCESS, safe="")
    store = open_store(ingested.url)
    try:
        latest = store.latest(PROCESS)
    finally:
        store.close()
    assert latest is not None
    alerting.evaluate(ingested.settings, now=latest, processes=[PROCESS])
    with running(ingested.settings) as base, httpx.Client(base_url=base, timeout=120) as http:
        bodies = {}
        for path in ("/", f"/processes/{quoted}", "/api/processes", f"/api/processes/{quoted}",
                     f"/api/processes/{quoted}/map.svg"):
            r = http.get(path)
            assert r.status_code == 200, (path, r.text[:500])
            assert "\x1b" not in r.text and "\x07" not in r.text, path
            bodies[path] = r.text
    rows = {r["name"]: r for r in strict_json(bodies["/api/processes"])}
    assert rows[PROCESS]["error"] is None
    assert rows[PROCESS]["events"] == sum(1 for m in ingested.placed.values() if m.event_id)
    strict_json(bodies[f"/api/processes/{quoted}"])
    svg = bodies[f"/api/processes/{quoted}/map.svg"]
    ET.fromstring(svg.encode())
    assert "Check\\x1b[31m\\x07" in svg
    page = bodies[f"/processes/{quoted}"]
    assert "case-\\x1b]0;pwned\\x07\\x1b[2J" in page, "the stuck escape case is not listed"
