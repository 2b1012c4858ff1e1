"""What the consumer tests share: a `backlight consume` run with its metrics, sampled as it goes
(`consuming`, `Running`), and the events they publish."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import popen_backlight
from prometheus_client.parser import text_string_to_metric_families

SESSION_TIMEOUT_S = 6.0  # write_config's session_timeout_ms


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def event(tag: str, i: int) -> bytes:
    return json.dumps({"event_id": f"{tag}-{i}", "case_id": f"c-{i % 17}",
                       "activity": f"Step {i % 4}", "resource": "u-1",
                       "timestamp": f"2026-03-04T09:{i % 60:02d}:00+01:00"}).encode()


def total(samples: Samples, name: str) -> float:
    return sum(samples.get(name, {}).values())


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll ``check`` until true; return how long it took (fail after ``seconds``)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"not within {seconds:.0f}s: {what}")


class Running:
    """A `backlight consume` subprocess, its stderr drained on a thread, and its ops URL."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._found = threading.Event()
        self.url = ""
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._found.wait(60):
            raise AssertionError("no metrics address on stderr:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = re.match(r"Metrics at (http://\S+?)/metrics ", line)
            if found:
                self.url = found.group(1)
                self._found.set()

    def get(self, path: str) -> httpx.Response:
        """GET from the consumer's port; if the process has exited, fail with its stderr."""
        try:
            return httpx.get(f"{self.url}{path}", timeout=30)
        except httpx.TransportError:
            if self.proc.poll() is None:
                raise
            raise AssertionError(f"the consumer exited {self.proc.returncode}:\n"
                                 + "".join(self.lines[-40:])) from None

    def ready(self) -> httpx.Response:
        return self.get("/readyz")

    def scrape(self) -> Samples:
        """/metrics parsed with Prometheus's own parser: per sample name, value by labels."""
        response = self.get("/metrics")
        assert response.status_code == 200
        out: Samples = {}
        for family in text_string_to_metric_families(response.text):
            for s in family.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out

    def sigterm(self) -> float:
        """Send SIGTERM; return the seconds until the process exited."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        return time.monotonic() - start


@contextmanager
def consuming(cfg: Path) -> Iterator[Running]:
    with popen_backlight("--log-level", "WARNING", "consume", "--config", str(cfg),
                         "--metrics-port", "0") as proc:
        yield Running(proc)
