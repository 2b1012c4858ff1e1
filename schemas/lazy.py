"""Package surfaces that load a name's module when the name is first read, so that importing
one part of a package (``storage`` for ``backlight mine``, ``alerts.calendar`` for the config,
``ingest.logfiles``) does not load all the others.

The one mechanism every package with a lazy surface uses: at the end of its ``__init__.py``,
``lazy_exports(__name__, HOMES)`` with ``HOMES`` mapping each module to the names it exports
(and the same names imported under ``TYPE_CHECKING``, for the type checker).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType

_HOMES = "__lazy_homes__"
"""The package attribute holding its name -> module table."""


class LazyPackage(ModuleType):
    """A package whose exported names load their modules on first read (and are then kept)."""

    def __getattr__(self, name: str) -> object:
        home = self.__dict__.get(_HOMES, {}).get(name)
        if home is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value: object) -> None:
        # A module of the package may share its name with the name it exports (``ingest.publish``
        # the module, ``publish`` the function): the import system binds the module to the
        # package when it first loads it; the package keeps exporting the name instead.
        if isinstance(value, ModuleType) and self.__dict__.get(_HOMES, {}).get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__dict__.get("__all__", ())))


def lazy_exports(package: str, homes: Mapping[str, Iterable[str]]) -> None:
    """Make the package named ``package`` (call it with ``__name__`` from its ``__init__.py``)
    load each name of ``homes`` (module -> the names it exports) from its module on first use."""
    module = sys.modules[package]
    table = {name: home for home, names in homes.items() for name in names}
    module.__dict__[_HOMES] = table
    module.__class__ = LazyPackage
