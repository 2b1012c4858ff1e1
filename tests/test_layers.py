"""The packages import downwards only (DESIGN.md): schemas <- storage <- ingest, and
schemas <- storage <- mining <- alerts <- backlight (which wires ingest and alerts together)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each package may import from the project (besides itself).
ALLOWED = {
    "schemas": set(),
    "storage": {"schemas"},
    "ingest": {"schemas", "storage"},
    "mining": {"schemas", "storage"},
    "alerts": {"schemas", "storage", "mining"},
    "backlight": {"schemas", "storage", "ingest", "mining", "alerts"},
}


def project_imports(path: Path) -> set[str]:
    """The top-level project packages a module imports, wherever in the module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                 else [])
        found |= {name.split(".")[0] for name in names} & set(ALLOWED)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    """No module of the package imports a package above it (or beside it: mining and ingest
    know nothing of each other)."""
    wrong = {str(path.relative_to(ROOT)): sorted(project_imports(path) - ALLOWED[package] - {package})
             for path in sorted((ROOT / package).rglob("*.py"))}
    assert {path: names for path, names in wrong.items() if names} == {}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_says_what_it_must_never_import(package: str) -> None:
    """The docstring atop the package's __init__.py has a paragraph on its imports that names
    every package it must never import (the rule above); the shell says it may import all."""
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""
    rule = next((p for p in doc.split("\n\n") if "never import" in " ".join(p.split())
                 or "may import every package" in p), "")
    forbidden = set(ALLOWED) - ALLOWED[package] - {package}
    assert rule, doc
    assert {name for name in forbidden if name not in rule} == set()
    if not forbidden:
        assert "may import every package" in rule


def test_no_test_module_imports_another() -> None:
    """What several test modules share lives in a ``*_support`` module (or conftest), never in
    another test module (importing one runs its module-level setup and ties them together)."""
    wrong = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        found = sorted(n for n in names if n.split(".")[0].startswith("test_"))
        if found:
            wrong[path.name] = found
    assert wrong == {}
