"""JSON that every parser reads: non-finite numbers (NaN, Infinity) become null.

Python's ``json`` writes ``NaN`` and ``Infinity``, which are not JSON (RFC 8259): strict
parsers, JavaScript's ``JSON.parse`` included, refuse the whole document. A figure computed from
odd data (a store holding events written before decode refused them) must never do that to a
reader, so documents are passed through ``finite`` and written with ``allow_nan=False``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth of dicts, lists and tuples, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of ``finite(value)``; never writes NaN or Infinity."""
    return json.dumps(finite(value), allow_nan=False, **options)
