"""`backlight broker start|stop|status`: a real local Kafka, and clear messages when tools are missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import backlight

from ingest.transport import KafkaSink, ensure_topics

pytestmark = pytest.mark.kafka


def test_start_status_stop_round_trip(tmp_path: Path) -> None:
    """start prints a bootstrap address that takes messages; status tells; stop stops it."""
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[broker]\ndirectory = "{tmp_path / "broker"}"\n')
    started = backlight("broker", "start", "--config", str(cfg), timeout=180)
    bootstrap = started.stdout.strip()
    assert bootstrap.startswith("127.0.0.1:")
    assert "export BACKLIGHT_KAFKA__BOOTSTRAP_SERVERS=" in started.stderr
    try:
        again = backlight("broker", "start", "--config", str(cfg))
        assert again.stdout.strip() == bootstrap, "a second start must reuse the running broker"
        status = backlight("broker", "status", "--config", str(cfg))
        assert status.stdout.startswith(f"running: {bootstrap}")
        ensure_topics(bootstrap, ["smoke"])
        sink = KafkaSink(bootstrap)
        sink.send("smoke", b"{}")
        sink.flush()
        sink.close()
    finally:
        stopped = backlight("broker", "stop", "--config", str(cfg), timeout=60)
    assert stopped.stdout.strip() == "stopped"
    after = backlight("broker", "status", "--config", str(cfg), check=False)
    assert (after.returncode, after.stdout.strip()) == (3, "not running")


def _path_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only the named tools (as symlinks), so the others are missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, f"{tool} is needed for this test"
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_missing_java_is_named(tmp_path: Path) -> None:
    """Without java on PATH, start says so and what to install, and exits 1."""
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[broker]\ndirectory = "{tmp_path / "broker"}"\n')
    proc = backlight("broker", "start", "--config", str(cfg), check=False,
                     env={"PATH": _path_with(tmp_path)})
    assert proc.returncode == 1
    assert "`java` was not found" in proc.stderr and "apt-get install" in proc.stderr


def test_missing_maven_is_named_when_kafka_is_not_cached(tmp_path: Path) -> None:
    """With no cached Kafka and no mvn on PATH, start names Maven as what to install."""
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[broker]\ndirectory = "{tmp_path / "broker"}"\n')
    proc = backlight("broker", "start", "--config", str(cfg), check=False,
                     env={"PATH": _path_with(tmp_path, "java"),
                          "BACKLIGHT_CACHE": str(tmp_path / "empty-cache")})
    assert proc.returncode == 1
    assert "`mvn` was not found" in proc.stderr and "apt-get install maven" in proc.stderr
    assert not (tmp_path / "broker" / "broker.json").exists()
