"""The built wheel, as `pip install .` and the container image install it, holds every module."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from conftest import ROOT

PACKAGES = sorted({name.split(".")[0] for name in tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]})
"""The top-level packages pyproject.toml names (backlight, ingest, mining, alerts, schemas,
storage)."""


def test_wheel_contains_every_package_and_the_embedded_config(tmp_path: Path) -> None:
    """Every Python module of the packages (subpackages included) is in the wheel, with
    the embedded default config, the event schema, and the web app's templates and assets."""
    assert {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"} == set(PACKAGES)
    source = tmp_path / "source"  # a clean copy: no build/ left over from an earlier build
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True,
                   timeout=300)
    [wheel] = (tmp_path / "dist").glob("backlight-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(ROOT)) for package in PACKAGES
                for p in (ROOT / package).rglob("*.py")}
    assert expected - names == set()
    assert {"backlight/default.toml", "schemas/case-event.schema.json"} <= names
    web = {str(p.relative_to(ROOT)) for folder in ("templates", "static")
           for p in (ROOT / "backlight" / "web" / folder).iterdir() if not p.name.startswith(".")}
    assert web and web - names == set()
