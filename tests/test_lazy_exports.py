"""A lazy package surface (schemas.lazy): a name loads its module on first read, once."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def package(tmp_path: Path, request: pytest.FixtureRequest,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package on the path exporting ``helper`` (from ``.parts``) and ``tool`` (from
    ``.tool``, a module of the same name as the function it exports), lazily."""
    name = f"lazy_{request.node.name}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text(textwrap.dedent(f"""
        from schemas.lazy import lazy_exports

        __all__ = ["helper", "tool"]

        lazy_exports(__name__, {{"{name}.parts": ("helper",), "{name}.tool": ("tool",)}})
        """))
    (root / "parts.py").write_text("def helper() -> str:\n    return 'helped'\n")
    (root / "tool.py").write_text("def tool() -> str:\n    return 'tooled'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def test_a_name_loads_its_module_on_first_read_and_is_listed(package: str) -> None:
    """Importing the package loads none of its modules; reading a name loads its module and
    gives the name's value; dir() lists every exported name."""
    pkg = importlib.import_module(package)
    assert f"{package}.parts" not in sys.modules
    assert {"helper", "tool"} <= set(dir(pkg))
    assert pkg.helper() == "helped"
    assert f"{package}.parts" in sys.modules
    assert f"{package}.tool" not in sys.modules


def test_a_module_named_like_its_export_leaves_the_export_in_place(package: str) -> None:
    """Importing the module ``tool`` directly first still leaves ``package.tool`` the function
    (the import system binds the module to the package; the package keeps its export)."""
    module = importlib.import_module(f"{package}.tool")
    pkg = sys.modules[package]
    assert isinstance(module, ModuleType)
    assert not isinstance(pkg.tool, ModuleType) and pkg.tool() == "tooled"


def test_an_unknown_name_is_an_attribute_error(package: str) -> None:
    """A name the package does not export is an AttributeError naming package and name."""
    pkg = importlib.import_module(package)
    with pytest.raises(AttributeError, match=rf"module '{package}' has no attribute 'nope'"):
        _ = pkg.nope
