"""``map.svg`` drawn at most once per process, window, view, snapped thresholds and data version.

Thresholds are snapped to 5% steps (``limits.quantise``); a map is laid out by Graphviz through
the ``RenderGate`` (at most ``web.map_renders`` at once) within ``web.map_timeout_s``, and what
came out is cached until the process gets new events (``ProcessCache``): the SVG, or the
failure (a layout that took too long fails the same way the next time, so it is not retried
for every request). A request refused by the gate (``RenderBusy``) is not cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from backlight.config import WebSettings
from backlight.web.cache import ProcessCache
from backlight.web.limits import STEP, RenderGate, quantise
from mining.errors import MiningError
from mining.render import MapData, MapOptions, View, process_map_svg
from storage import EventStore


@dataclass(frozen=True)
class Drawn:
    """A map laid out (``svg``), or why it could not be (``error``)."""

    svg: str | None
    error: str | None = None


class MapRenderer:
    """The process maps of the web, bounded in number, concurrency and time."""

    def __init__(self, store: EventStore, web: WebSettings, max_entries: int) -> None:
        self.gate = RenderGate(web.map_renders, web.map_wait_s)
        self.timeout_s = web.map_timeout_s
        self._cache: ProcessCache[Drawn] = ProcessCache(store, max_entries)

    def svg(self, process: str, window: str, data: pl.DataFrame | MapData, version: int,
            view: View, activities: float, paths: float) -> str:
        """The map of ``data`` (the process's events in the window, or its read model's
        figures), ``version`` telling one state of it from another (how many events it
        holds); ``MiningError`` when it cannot be laid out, ``RenderBusy`` when no render slot
        frees up in time."""
        activities, paths = quantise(activities, STEP), quantise(paths, 0.0)
        options = MapOptions(view=view, activities=activities, paths=paths)

        def draw() -> Drawn:
            try:
                return Drawn(process_map_svg(data, options, title=process,
                                             timeout_s=self.timeout_s))
            except MiningError as exc:
                return Drawn(None, str(exc))

        source = "figures" if isinstance(data, MapData) else "events"
        drawn = self._cache.get((process, window, source, version, view, activities, paths),
                                lambda: self.gate.run(draw))
        if drawn.svg is None:
            raise MiningError(drawn.error or "the map could not be drawn")
        return drawn.svg
