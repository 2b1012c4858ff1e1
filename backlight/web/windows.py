"""The time windows the pages and the API offer, and a stuck case as the pages list it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

WINDOWS: Final[dict[str, tuple[str, timedelta | None]]] = {
    "4w": ("last 4 weeks", timedelta(weeks=4)),
    "quarter": ("last quarter", timedelta(days=91)),
    "all": ("all time", None),
}
"""Each window's label and length; what a window counts is `backlight.figures_view`'s."""
DEFAULT_WINDOW: Final = "all"


@dataclass(frozen=True)
class StuckCase:
    """An open case idle far longer than normal at its step (the stuck rule's verdict)."""

    case_id: str
    step: str
    idle_days: float
    since: str
