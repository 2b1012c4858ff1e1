"""Benchmark (run on demand: pytest -m bench -s tests/test_bench_ingest.py): BPIC 2012 ingest rate.

Measures, in one run on one topic: a bare kafka-python consume loop (poll and drop), and
Backlight's consumer (poll, decode, validate, store in SQLite, commit), as events/s and their
ratio; where the consumer's time goes per phase; and the consumer process's peak memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, backlight, shared_file, write_config
from kafka import KafkaConsumer

from ingest.consumer import Consumer
from ingest.store import open_store
from ingest.transport import KafkaSink, KafkaSource
from schemas.decode import SourceSpec

pytestmark = [pytest.mark.bench, pytest.mark.kafka, pytest.mark.shared_data]
EVENTS = 262_200
# Runs the CLI and prints its peak RSS. VmHWM is the high-water mark of this process's own
# address space; ru_maxrss is not usable here, as Linux carries it over fork and exec from
# the parent (a benchmark holding a million simulated events would be measured instead).
PEAK_RSS = """
import sys
from backlight.cli import main
sys.argv = ["backlight", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("peak_rss_kib", hwm.split()[1], file=sys.stderr)
"""


def bare_loop(bootstrap: str, topic: str, group: str) -> float:
    """Events/s of kafka-python polling the topic and dropping the records."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=5000, fetch_max_bytes=16 * 1024 * 1024,
                             max_partition_fetch_bytes=2 * 1024 * 1024)  # as KafkaSource
    seen, started = 0, None
    while seen < EVENTS:
        for batch in consumer.poll(timeout_ms=1000, max_records=5000).values():
            started = started or time.monotonic()
            seen += len(batch)
    took = time.monotonic() - (started or 0)
    consumer.close()
    return seen / took


def backlight_consumer(bootstrap: str, topic: str, group: str, db: Path) -> tuple[float, dict]:
    """Events/s of Backlight's consumer into a fresh SQLite store, and seconds per phase."""
    store = open_store(f"sqlite:///{db}")
    source = KafkaSource(bootstrap, group, [topic])
    sink = KafkaSink(bootstrap)
    consumer = Consumer(source, sink, store, {topic: SourceSpec(topic, "onboarding")})
    stats = consumer.run(exit_when_idle_s=1.0)
    source.close()
    sink.close()
    store.close()
    assert stats.stored == EVENTS
    assert stats.busy_since is not None and stats.busy_until is not None
    return stats.stored / (stats.busy_until - stats.busy_since), dict(stats.seconds)


def test_bpic2012_ingest_rate_vs_bare_kafka_python(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Prints BPIC 2012 consume->store events/s beside a bare kafka-python loop, and peak memory."""
    log = shared_file("logs/bpic2012.xes.gz")
    topic = f"bench.bpic.{int(time.time())}"
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, tmp_path / "cli.db",
                       [(topic, "onboarding")], f"cli-{topic}")
    backlight("replay", str(log), "--process", "onboarding", "--config", str(cfg))

    rounds = []
    for i in range(2):  # alternate, so neither side always runs on a warmer broker cache
        bare = bare_loop(kafka_bootstrap, topic, f"bare-{i}-{topic}")
        ours, phases = backlight_consumer(kafka_bootstrap, topic, f"ours-{i}-{topic}",
                                          tmp_path / f"ours-{i}.db")
        rounds.append((bare, ours, phases))

    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, "--log-level", "WARNING", "consume",
                           "--config", str(cfg), "--exit-when-idle", "1"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert "262200 stored" in proc.stdout
    peak_kib = int(proc.stderr.strip().splitlines()[-1].split()[-1])

    print(f"\nBPIC 2012 ({EVENTS} events), one topic, same broker, same run")
    for i, (bare, ours, phases) in enumerate(rounds):
        total = sum(phases.values())
        share = ", ".join(f"{k} {v:.2f}s ({v / total:.0%})" for k, v in
                          sorted(phases.items(), key=lambda kv: -kv[1]))
        print(f"round {i}: bare kafka-python {bare:,.0f} ev/s | backlight consume->store "
              f"{ours:,.0f} ev/s | ratio {ours / bare:.2f}")
        print(f"         where the consumer's time goes: {share}")
    print(f"backlight consume (CLI process, all of BPIC 2012) peak RSS: {peak_kib / 1024:.0f} MiB")
    print(json.dumps({"bare_ev_s": [round(r[0]) for r in rounds],
                      "ours_ev_s": [round(r[1]) for r in rounds],
                      "peak_rss_mib": round(peak_kib / 1024)}))
