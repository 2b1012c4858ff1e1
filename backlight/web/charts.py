"""Small inline SVG charts for the pages, built from numbers only.

What these functions return is marked safe for the templates because every character of it is
written here from numbers this module formats itself: no event text ever goes inside.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

SPARK_W = 120
SPARK_H = 28
PAD = 3


def _num(value: float) -> str:
    """A coordinate: plain decimal, never NaN or an exponent."""
    if value != value or value in (float("inf"), float("-inf")):
        value = 0.0
    return f"{value:.1f}"


def sparkline(values: Sequence[float], label: str = "") -> Markup:
    """A tiny line chart of ``values`` (oldest first), the last point marked; a dashed
    placeholder without values. ``label`` (the accessible name) is escaped."""
    points = [float(v) for v in values]
    size = {"w": SPARK_W, "h": SPARK_H, "label": label}
    if not points:
        return Markup(
            '<svg class="spark spark-empty" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
            'role="img" aria-label="{label}"><line class="spark-base" x1="{x1}" y1="{y}" '
            'x2="{x2}" y2="{y}"/></svg>').format(x1=PAD, x2=SPARK_W - PAD, y=SPARK_H / 2, **size)
    low, high = min(points), max(points)
    span = high - low or 1.0
    step = (SPARK_W - 2 * PAD) / max(len(points) - 1, 1)
    coords = []
    for i, v in enumerate(points):
        x = PAD + i * step if len(points) > 1 else SPARK_W / 2
        y = SPARK_H / 2 if high == low else SPARK_H - PAD - (v - low) / span * (SPARK_H - 2 * PAD)
        coords.append((x, y))
    path = " ".join(f"{_num(x)},{_num(y)}" for x, y in coords)
    last_x, last_y = coords[-1]
    trend = "up" if points[-1] > points[0] else "down" if points[-1] < points[0] else "flat"
    line = (Markup('<polyline class="spark-line" points="{}"/>').format(path)
            if len(coords) > 1 else Markup(""))
    return Markup(
        '<svg class="spark spark-{trend}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'role="img" aria-label="{label}">{line}<circle class="spark-dot" cx="{cx}" cy="{cy}" '
        'r="2.5"/></svg>').format(trend=trend, line=line, cx=_num(last_x), cy=_num(last_y),
                                  **size)


def share_bar(share: float | None) -> Markup:
    """A horizontal bar filled to ``share`` (0..1)."""
    value = 0.0 if share is None else max(0.0, min(1.0, float(share)))
    return Markup(
        '<svg class="bar" viewBox="0 0 100 8" width="100" height="8" aria-hidden="true">'
        '<rect class="bar-bg" x="0" y="0" width="100" height="8" rx="2"/>'
        '<rect class="bar-fg" x="0" y="0" width="{}" height="8" rx="2"/></svg>'
    ).format(_num(value * 100))
