"""Small inline SVG charts for the pages, built from numbers only.

What these functions return is marked safe for the templates because every character of it is
written here from numbers and dates this module formats itself; the only text that may come
from events (a chart's accessible name, its title) goes in through ``Markup.format``, which
escapes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from markupsafe import Markup

from alerts.episode_series import EpisodeSeries

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


EP_W, EP_H = 640, 220
EP_LEFT, EP_RIGHT, EP_TOP, EP_BOTTOM = 56, 14, 14, 30


def _value_label(value: float, unit: str) -> str:
    return f"{value * 100:.0f}%" if unit == "share" else f"{value:.1f} d"


def episode_chart(series: EpisodeSeries) -> Markup:
    """An alert's figure around its episode (``alerts.episode_series``): the points joined by a
    line, the baseline window shaded, the baseline band (p10-p90 of its points) and level, the
    onset marked. ``series.title`` (event text) is escaped; the rest is numbers and dates."""
    days = max((series.end - series.start).days, 1)
    values = [v for _d, v in series.points]
    band = series.band
    top = max([*values, band.high if band else 0.0, 1e-9]) * 1.1
    plot_w, plot_h = EP_W - EP_LEFT - EP_RIGHT, EP_H - EP_TOP - EP_BOTTOM

    def x(day: date) -> str:
        return _num(EP_LEFT + (day - series.start).days / days * plot_w)

    def y(value: float) -> str:
        return _num(EP_TOP + plot_h - max(value, 0.0) / top * plot_h)

    parts = [Markup('<rect class="ep-base-window" x="{}" y="{}" width="{}" height="{}"/>').format(
        x(series.baseline_from), EP_TOP,
        _num(max((series.baseline_to - series.baseline_from).days + 1, 0) / days * plot_w),
        plot_h)]
    if band is not None:
        parts.append(Markup('<rect class="ep-band" x="{}" y="{}" width="{}" height="{}"/>'
                            '<line class="ep-level" x1="{}" y1="{}" x2="{}" y2="{}"/>').format(
            EP_LEFT, y(band.high), plot_w, _num(float(y(band.low)) - float(y(band.high))),
            EP_LEFT, y(band.level), EP_LEFT + plot_w, y(band.level)))
    if series.onset is not None and series.start <= series.onset <= series.end:
        parts.append(Markup('<line class="ep-onset" x1="{x}" y1="{t}" x2="{x}" y2="{b}"/>'
                            '<text class="ep-onset-label" x="{x}" y="{ty}">onset {d}</text>'
                            ).format(x=x(series.onset), t=EP_TOP, b=EP_TOP + plot_h,
                                     ty=EP_TOP + 10, d=series.onset.isoformat()))
    coords = " ".join(f"{x(d)},{y(v)}" for d, v in series.points)
    if len(series.points) > 1:
        parts.append(Markup('<polyline class="ep-line" points="{}"/>').format(coords))
    parts.extend(Markup('<circle class="ep-dot" cx="{}" cy="{}" r="2.5"><title>{}: {}</title>'
                        '</circle>').format(x(d), y(v), d.isoformat(), _value_label(v, series.unit))
                 for d, v in series.points)
    if not series.points:
        parts.append(Markup('<text class="ep-empty" x="{}" y="{}">no data in this span</text>'
                            ).format(EP_LEFT + plot_w / 2, EP_TOP + plot_h / 2))
    axis = Markup(
        '<line class="ep-axis" x1="{l}" y1="{b}" x2="{r}" y2="{b}"/>'
        '<text class="ep-tick" x="{lx}" y="{ty}" text-anchor="end">{top}</text>'
        '<text class="ep-tick" x="{lx}" y="{b}" text-anchor="end">{zero}</text>'
        '<text class="ep-tick" x="{l}" y="{dy}">{first}</text>'
        '<text class="ep-tick" x="{r}" y="{dy}" text-anchor="end">{last}</text>').format(
        l=EP_LEFT, r=EP_LEFT + plot_w, b=EP_TOP + plot_h, lx=EP_LEFT - 4, ty=EP_TOP + 8,
        dy=EP_H - 8, top=_value_label(top, series.unit), zero=_value_label(0.0, series.unit),
        first=series.start.isoformat(), last=series.end.isoformat())
    return Markup(
        '<svg class="episode-chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="{label}">{axis}{body}</svg>').format(
        w=EP_W, h=EP_H, label=series.title, axis=axis, body=Markup("").join(parts))
