"""Counters kept by the incremental models (`mining.live`, `mining.figures`): one way to move a
count and one order to show counts in."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def bump(counter: dict[K, int], key: K, delta: int) -> None:
    """Add delta to a count, dropping the key at zero; a count never goes below zero."""
    value = counter.get(key, 0) + delta
    if value < 0:
        raise ValueError(f"taking out {key!r}, which is not counted")
    if value:
        counter[key] = value
    else:
        del counter[key]


def ranked(counter: Mapping[K, int]) -> dict[K, int]:
    """Counts by count descending, then key."""
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
