"""Durations as people write them in config: ``"5 business days"``, ``"36 hours"``, ``"4h"``.

A ``Duration`` is either wall-clock time (``hours``, ``days``, ``weeks``, ``minutes``) or
business time (``business days`` / ``business hours``), which only a ``WorkCalendar``
(``alerts.calendar``) turns into seconds of working time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from alerts.errors import AlertConfigError

Unit = Literal["minutes", "hours", "days", "weeks", "business_hours", "business_days"]
_SECONDS = {"minutes": 60, "hours": 3600, "days": 86_400, "weeks": 7 * 86_400}
_WORDS: dict[str, Unit] = {
    "m": "minutes", "min": "minutes", "mins": "minutes", "minute": "minutes", "minutes": "minutes",
    "h": "hours", "hour": "hours", "hours": "hours",
    "d": "days", "day": "days", "days": "days",
    "w": "weeks", "week": "weeks", "weeks": "weeks",
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(business|working)?\s*([a-z]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Duration:
    amount: float
    unit: Unit

    @property
    def business(self) -> bool:
        return self.unit.startswith("business_")

    @property
    def wall_seconds(self) -> float:
        """Seconds of wall-clock time; a business duration has none without a calendar."""
        if self.business:
            raise AlertConfigError(f"{self} is business time: convert it with a WorkCalendar")
        return self.amount * _SECONDS[self.unit]

    def __str__(self) -> str:
        unit = self.unit.replace("_", " ")
        amount = f"{self.amount:g}"
        return f"{amount} {unit[:-1] if self.amount == 1 else unit}"


def parse_duration(text: str) -> Duration:
    """``"5 business days"`` -> Duration(5, "business_days"); raises ``AlertConfigError``
    naming what is wrong (the config loader adds the key)."""
    match = _PATTERN.match(text)
    if not match:
        raise AlertConfigError(f"{text!r} is not a duration; write e.g. '5 business days', "
                               "'36 hours', '4h', '2 weeks'")
    amount, business, word = float(match.group(1)), match.group(2), match.group(3).lower()
    unit = _WORDS.get(word)
    if unit is None:
        raise AlertConfigError(f"{text!r}: unknown unit {word!r} (minutes, hours, days, weeks)")
    if business:
        if unit not in ("hours", "days"):
            raise AlertConfigError(f"{text!r}: business time is counted in hours or days")
        unit = "business_hours" if unit == "hours" else "business_days"
    if amount <= 0:
        raise AlertConfigError(f"{text!r}: a duration must be positive")
    return Duration(amount, unit)
