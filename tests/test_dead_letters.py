"""Bad input on a real broker: every malformed message in <topic>.dlq with a reason, every valid
one stored, and the consumer still running."""

from __future__ import annotations

import json
import math
import random
import re
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import popen_backlight, stored_count, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer

from ingest.transport import KafkaSink, ensure_topics

pytestmark = pytest.mark.kafka
Headers = list[tuple[str, bytes | None]]
REQUIRED = ("case_id", "activity", "timestamp")


def valid_event(i: int) -> dict[str, Any]:
    return {"event_id": f"ok-{i}", "case_id": f"c-{i % 97}", "activity": f"Step {i % 7}",
            "timestamp": f"2026-03-04T09:{i % 60:02d}:00+01:00", "resource": "u-1",
            "attributes": {"n": i}}


def handwritten_bad(rng: random.Random) -> list[tuple[bytes, Headers, str]]:
    """(value, headers, expected reason code) for each kind of bad input, many times over."""
    out: list[tuple[bytes, Headers, str]] = []
    for i in range(60):
        ok = valid_event(10_000 + i)
        dropped = rng.choice(REQUIRED)
        out += [
            (json.dumps(ok).encode()[: rng.randint(1, 40)], [], "invalid_json"),
            (bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))) + b"\xff", [],
             "invalid_json"),
            (json.dumps({**ok, "activity": rng.choice([1, 2.5, True, [1], {"a": 1}])}).encode(),
             [], "wrong_type"),
            (json.dumps({k: v for k, v in ok.items() if k != dropped}).encode(), [],
             "missing_field"),
            (json.dumps({**ok, "timestamp": rng.choice(["soon", "2026-02-30T10:00:00Z", "",
                                                        "12/03/2026 10:00"])}).encode(), [],
             "bad_timestamp"),
            (json.dumps({**ok, "timestamp": "2026-03-04T09:15:00"}).encode(), [],
             "naive_timestamp"),
            (json.dumps({**ok, f"unexpected_{i}": 1}).encode(), [], "unknown_field"),
            (json.dumps({"specversion": "1.0", "id": f"ce-{i}", "type": "t",
                         "source": "s"}).encode(), [], "cloudevent_without_data"),
            (json.dumps({"activity": "x"}).encode(), [("ce_specversion", b"0.3")],
             "bad_cloudevent"),
        ]
        if i % 10 == 0:
            out.append((json.dumps({**ok, "attributes": {"blob": "x" * 300_000}}).encode(), [],
                        "too_large"))
    # an empty timestamp is a missing one, not a malformed one
    return [(v, h, "missing_field" if b'"timestamp": ""' in v else c) for v, h, c in out]


def generated_bad(count: int) -> list[tuple[bytes, Headers, str]]:
    """Valid events broken by hypothesis: a required field dropped, retyped, or an extra key."""
    found: list[tuple[bytes, Headers, str]] = []
    wrong = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(),
                      st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                           st.integers(),
                                                                           max_size=2))

    @settings(max_examples=count, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 10**6), st.sampled_from(["drop", "retype", "extra"]),
           st.sampled_from(REQUIRED), wrong, st.text(min_size=1, max_size=12))
    def collect(i: int, how: str, key: str, value: Any, extra: str) -> None:
        doc: dict[str, Any] = valid_event(20_000 + i)
        if how == "drop":
            del doc[key]
            code = "missing_field"
        elif how == "retype":
            if key == "case_id" and type(value) is int:
                value += 0.5  # an integer case id is valid (it is read as text)
            doc[key] = value
            # infinity is no JSON number: json.dumps writes a bare Infinity, which is its own code
            code = "non_finite_number" if value in (math.inf, -math.inf) else "wrong_type"
        else:
            name = f"x_{extra}"
            doc[name] = value
            code = "unknown_field"
        found.append((json.dumps(doc).encode(), [], code))

    collect()
    return found


def test_malformed_corpus_goes_to_dlq_and_valid_events_are_stored(
        kafka_bootstrap: str, tmp_path: Path, unique: str) -> None:
    """1,000+ malformed messages mixed with 2,000 valid: each bad one in the DLQ with its
    reason and source coordinates, each valid one stored, the consumer still running."""
    rng = random.Random(7)
    bad = handwritten_bad(rng) + generated_bad(500)
    assert len(bad) >= 1000
    good = [valid_event(i) for i in range(2000)]
    topic = f"mixed.{unique}"
    ensure_topics(kafka_bootstrap, [topic, f"{topic}.dlq"])
    stream: list[tuple[bytes, Headers, str | None]] = [
        *((v, h, c) for v, h, c in bad), *((json.dumps(g).encode(), [], None) for g in good)]
    rng.shuffle(stream)
    sink = KafkaSink(kafka_bootstrap)
    for n, (value, headers, _) in enumerate(stream):
        sink.send(topic, value, key=str(n).encode(), headers=[*headers, ("n", str(n).encode())])
    sink.flush()
    sink.close()

    db = tmp_path / "s.db"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, db, [(topic, "claims")],
                       f"g-{unique}")
    with popen_backlight("consume", "--config", str(cfg)) as proc:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and stored_count(db) < len(good):
            time.sleep(0.5)
        dlq = KafkaConsumer(f"{topic}.dlq", bootstrap_servers=kafka_bootstrap,
                            auto_offset_reset="earliest", enable_auto_commit=False,
                            consumer_timeout_ms=10_000, group_id=None)
        letters = []
        for letter in dlq:
            letters.append(letter)
            if len(letters) == len(bad):
                break
        dlq.close()
        assert proc.poll() is None, "the consumer stopped on bad input"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    logged = sum(int(m) for m in re.findall(r"dead_letters=(\d+)", err))
    assert logged == len(bad), "the consumer's logs do not count every dead letter"

    with sqlite3.connect(db) as conn:
        ids = {r[0] for r in conn.execute("SELECT event_id FROM events")}
    assert ids == {g["event_id"] for g in good}
    assert len(letters) == len(bad)
    want = {n: (v, c) for n, (v, _, c) in enumerate(stream) if c is not None}
    for letter in letters:
        headers = {k: v for k, v in letter.headers}
        n = int(headers["n"])
        value, code = want.pop(n)
        assert letter.value == value, "the dead letter is not the unchanged message"
        assert headers["backlight.error.code"].decode() == code
        assert headers["backlight.error"].decode().startswith(code)
        assert headers["backlight.source.topic"].decode() == topic
        assert int(headers["backlight.source.offset"]) >= 0
    assert not want
