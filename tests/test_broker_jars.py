"""Resolving the Kafka broker's jars on a fresh machine: two `backlight` commands that start
while the first download runs both succeed with the same jars (the jars come from Maven's
local repository, ~/.m2, so this resolves without the network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

from ingest.broker import KAFKA_VERSION

RESOLVE = ("import os\n"
           "print('start', flush=True)\n"
           "from ingest.broker import resolve_jars\n"
           "lib = resolve_jars()\n"
           "print('jars', lib, *sorted(os.listdir(lib)), flush=True)\n")
DEADLINE_S = 600.0
"""Only a guard against a hang."""


def test_two_processes_resolving_into_an_empty_cache_both_succeed(tmp_path: Path) -> None:
    """Both resolvers run at once into an empty cache: both exit 0 with the same, complete jar
    folder, and no partial folder is left behind."""
    cache = tmp_path / "cache"
    env = {**os.environ, "BACKLIGHT_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", RESOLVE], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        assert all(p.stdout is not None and p.stdout.readline() == "start\n" for p in procs)
        # Both have started and neither has finished: the two resolutions overlap.
        assert [p.poll() for p in procs] == [None, None]
        results = [p.communicate(timeout=DEADLINE_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    (first, _), (second, _) = results
    assert first == second
    jars = first.split()
    assert f"kafka_2.13-{KAFKA_VERSION}.jar" in jars and ".complete" in jars
    work = cache / f"kafka-{KAFKA_VERSION}"
    assert [p.name for p in work.iterdir() if "partial" in p.name] == []
