"""`backlight simulate` refuses anomalies naming activities no simulated process has."""

from __future__ import annotations

from pathlib import Path

from conftest import backlight


def test_unknown_anomaly_activity_is_refused_naming_the_choices(tmp_path: Path) -> None:
    """A typo in --bottleneck exits 2 naming the flag, the value and the real activities,
    before anything is published (no broker is needed to be told)."""
    cfg = tmp_path / "b.toml"
    cfg.write_text('[kafka]\nbootstrap_servers = "127.0.0.1:1"\n')
    proc = backlight("simulate", "--config", str(cfg), "--process", "claims", "--cases", "5",
                     "--bottleneck", "Risk reveiw", check=False, timeout=60)
    assert proc.returncode == 2
    assert "--bottleneck 'Risk reveiw'" in proc.stderr and "Register claim" in proc.stderr
