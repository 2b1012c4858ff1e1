"""Package surfaces that load a name's module when the name is first read (PEP 562), so that
importing one part of a package (``storage`` for ``backlight mine``, ``alerts.calendar``
for the config) does not load all the others."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_exports(namespace: dict[str, Any], homes: Mapping[str, str], exported: Collection[str]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose ``globals()`` is ``namespace``:
    a name in ``homes`` (name -> module) is imported from its module on first use and kept."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exported))

    return __getattr__, __dir__
