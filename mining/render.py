"""Process maps: a Disco-like directly-follows map as Graphviz DOT text, rendered to SVG by `dot`."""

from __future__ import annotations

import html
import math
import re
import subprocess
import textwrap
from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

from mining.dfg import Dfg, Edge, discover_dfg
from mining.errors import MiningError
from mining.figures import Figures
from mining.frame import Events, EventsLike, prepare
from mining.rework import MAX_LOOPS, Loop, discover_loops
from mining.stats import WaitStats
from schemas.printable import printable

# Simplification, as Disco's sliders do it:
# - `activities`: keep the ceil(share * n) activities with the most events (ties by name). The
#   others are projected out of every case before the paths are computed, so a -> hidden -> b
#   shows as a -> b and every kept activity stays connected to start and end.
# - `paths`: among the paths of that projected map (activity -> activity, start -> first
#   activity, last activity -> end) keep the ceil(share * n) most frequent; then, as long as a
#   kept activity cannot be reached from start (or cannot reach end), add the most frequent
#   path that reaches one more activity (Prim's algorithm, which keeps the widest route).
# Bottleneck: a shown activity -> activity path whose median wait is among the top decile of
# the shown paths' medians (the ceil(n / 10) largest, ties included) AND at least
# `bottleneck_min_s` (default 1 h, so a map whose waits are all short has no bottleneck),
# on a path taken at least `bottleneck_min_count` times (default 10: a median over a handful of
# cases is noise to a process owner), unless the caller passes `bottlenecks` explicitly.
# Rework: a shown path on a loop of `discover_loops` (self-loops included) that at least
# `loop_share` of the cases go round.
# Defaults: all activities and 20% of the paths. Back-office processes have a few dozen
# activities and a person wants to see each one, while the paths are what turns a map into
# spaghetti. BPIC 2012 (24 activities, 137 paths with start/end) then draws all 24 activities
# and 45 paths (28 by share, 17 more to keep every activity connected), which dot lays out
# legibly; the caption says what is hidden.

View = Literal["frequency", "performance"]
Key = tuple[str, str]
START: Final = -1  # node indices of the artificial start and end; activities are 0, 1, ...
END: Final = -2
RED, ORANGE, GREY = "#d62728", "#e8710a", "#666666"
NAMED_HIDDEN: Final = 10  # hidden activities named in the caption
BR_LEFT: Final = '<BR ALIGN="LEFT"/>'  # ends a left-justified line of an HTML-like label
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


@dataclass(frozen=True)
class MapOptions:
    """What the map shows: the view, the simplification shares, what counts as a problem."""

    view: View = "frequency"
    activities: float = 1.0  # share (0, 1] of the activities kept, most frequent first
    paths: float = 0.2  # share [0, 1] of the paths kept, most frequent first, plus connectivity
    bottleneck_min_s: float = 3600.0  # a bottleneck's median wait is at least this
    bottleneck_min_count: int = 10  # ...on a path taken at least this often (no 4-case noise)
    loop_share: float = 0.05  # loops that at least this share of the cases go round are marked
    bottlenecks: frozenset[Key] | None = None  # explicit bottleneck paths instead of the rule

    def __post_init__(self) -> None:
        if self.view not in ("frequency", "performance"):
            raise MiningError(f"unknown map view {self.view!r}; allowed: frequency, performance")
        if not 0 < self.activities <= 1:
            raise MiningError(f"activities must be a share in (0, 1], got {self.activities}")
        if not 0 <= self.paths <= 1:
            raise MiningError(f"paths must be a share in [0, 1], got {self.paths}")
        if self.bottleneck_min_count < 1:
            raise MiningError(f"bottleneck_min_count must be at least 1, got {self.bottleneck_min_count}")
        if not 0 <= self.loop_share <= 1:
            raise MiningError(f"loop_share must be a share in [0, 1], got {self.loop_share}")


@dataclass(frozen=True)
class ProcessMap:
    """The simplified map: what is shown, what is marked, and a caption saying what is hidden."""

    activities: dict[str, int]  # shown activity -> events, most frequent first
    edges: tuple[Edge, ...]  # shown activity -> activity paths (of the projected DFG)
    starts: dict[str, int]  # shown start -> activity paths, in cases
    ends: dict[str, int]  # shown activity -> end paths, in cases
    bottlenecks: frozenset[Key]
    rework: frozenset[Key]
    hidden_activities: dict[str, int]
    total_paths: int  # paths of the projected map, start and end paths included
    caption: str


def humanize_seconds(seconds: float) -> str:
    """A duration for people: '45 s', '12 min', '3.2 h', '2 d'."""
    unit, size = next(((u, s) for u, s in (("d", 86400), ("h", 3600), ("min", 60)) if seconds >= s), ("s", 1))
    value = seconds / size
    text = f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}"


def _plural(n: int, one: str, many: str) -> str:
    """'1 path', '3 paths'."""
    return f"{n} {one if n == 1 else many}"


def _share(share: float, n: int) -> int:
    """ceil(share * n), immune to float noise such as 0.3 * 10 = 3.0000000000000004."""
    return math.ceil(round(share * n, 9))


def _connect(keep: set[tuple[int, int]], paths: dict[tuple[int, int], int], root: int, forward: bool) -> None:
    """Add the most frequent crossing paths until every node is reached from `root` (Prim)."""

    def ends(k: tuple[int, int]) -> tuple[int, int]:
        return k if forward else (k[1], k[0])

    reached = {root}
    while True:
        new = {root}
        while new:
            new = {ends(k)[1] for k in keep if ends(k)[0] in reached} - reached
            reached |= new
        crossing = [k for k in paths if ends(k)[0] in reached and ends(k)[1] not in reached]
        if not crossing:
            return
        keep.add(min(crossing, key=lambda k: (-paths[k], k)))


def _bottlenecks(edges: tuple[Edge, ...], options: MapOptions) -> frozenset[Key]:
    """The rule of the module comment, or the explicit set restricted to the shown paths."""
    shown = {(e.source, e.target) for e in edges}
    if options.bottlenecks is not None:
        return frozenset(options.bottlenecks & shown)
    if not edges:
        return frozenset()
    medians = sorted((e.wait.median for e in edges), reverse=True)
    cut = max(medians[_share(0.1, len(edges)) - 1], options.bottleneck_min_s)
    return frozenset((e.source, e.target) for e in edges
                     if e.wait.median >= cut and e.count >= options.bottleneck_min_count)


@dataclass(frozen=True)
class MapData:
    """What a map is drawn from when it is not drawn from the events themselves (a read
    model's figures): the activities' event counts, most frequent first (ties by name), the
    directly-follows graph with its waits, the loops cases go round, and how many cases."""

    activities: dict[str, int]
    dfg: Dfg
    loops: tuple[Loop, ...]
    cases: int

    @classmethod
    def of(cls, figures: Figures) -> MapData:
        """A read model's figures as a map's data: counts exact, waits within the sketches'
        alpha, the loops most cases go round as ``discover_loops`` keeps them."""
        edges = sorted(figures.edges.items(), key=lambda kv: (-kv[1].count, kv[0]))
        return cls(
            activities=figures.activities,
            dfg=Dfg(tuple(Edge(a, b, k.count, WaitStats(k.mean_s, k.quantile_s(0.5),
                                                        k.quantile_s(0.9), k.max_s))
                          for (a, b), k in edges),
                    figures.start_activities, figures.end_activities),
            loops=tuple(figures.loops[:MAX_LOOPS]), cases=figures.cases)


def build_map(data: EventsLike | MapData, options: MapOptions = MapOptions()) -> ProcessMap:
    """Simplify the directly-follows map of the events as MapOptions says (see module comment).
    From ``MapData`` every activity must be shown: hiding one projects the traces, which only
    the events can."""
    if isinstance(data, MapData):
        counts = data.activities
        names = list(counts)[: _share(options.activities, len(counts))]
        if len(names) < len(counts):
            raise MiningError("a map that hides activities is drawn from the events")
        hidden: dict[str, int] = {}
        dfg, cases = data.dfg, data.cases
        all_loops = list(data.loops)
    else:
        events = prepare(data)
        table = events.df.group_by("activity").len().sort(["len", "activity"], descending=[True, False])
        counts = {str(a): int(n) for a, n in table.iter_rows()}
        names = list(counts)[: _share(options.activities, len(counts))]
        kept = set(names)
        hidden = {a: n for a, n in counts.items() if a not in kept}
        shown = (Events(events.df.filter(pl.col("activity").is_in(names)), events.lifecycle)
                 if hidden else events)
        dfg, cases = discover_dfg(shown), events.cases
        all_loops = discover_loops(shown)
    index = {a: i for i, a in enumerate(names)}
    by_key = {(index[e.source], index[e.target]): e for e in dfg.edges}
    paths = {(START, index[a]): n for a, n in dfg.start_activities.items()}
    paths |= {k: e.count for k, e in by_key.items()}
    paths |= {(index[a], END): n for a, n in dfg.end_activities.items()}
    keep = set(sorted(paths, key=lambda k: (-paths[k], k))[: _share(options.paths, len(paths))])
    _connect(keep, paths, START, forward=True)
    _connect(keep, paths, END, forward=False)
    edges = tuple(e for k, e in by_key.items() if k in keep)
    loops = [lp.cycle for lp in all_loops if lp.cases >= options.loop_share * cases]
    on_loops = {(c[i], c[(i + 1) % len(c)]) for c in loops for i in range(len(c))}
    hidden_paths = [n for k, n in paths.items() if k not in keep]
    caption = f"showing {len(names)} of {len(counts)} activities, {len(keep)} of {len(paths)} paths"
    if hidden or hidden_paths:
        parts = []
        if hidden:
            listed = ", ".join(list(hidden)[:NAMED_HIDDEN])
            more = f" and {len(hidden) - NAMED_HIDDEN} more" if len(hidden) > NAMED_HIDDEN else ""
            most = max(hidden.values())
            parts.append(
                f"{_plural(len(hidden), 'activity', 'activities')} with ≤ {most:,} events each "
                f"({listed}{more})"
            )
        if hidden_paths:
            parts.append(
                f"{_plural(len(hidden_paths), 'path', 'paths')} with ≤ {max(hidden_paths):,} transitions each"
            )
        caption += "; hidden: " + ", ".join(parts)
    return ProcessMap(
        activities={a: counts[a] for a in names},
        edges=edges,
        starts={names[t]: n for (s, t), n in paths.items() if s == START and (s, t) in keep},
        ends={names[s]: n for (s, t), n in paths.items() if t == END and (s, t) in keep},
        bottlenecks=_bottlenecks(edges, options),
        rework=frozenset(on_loops & {(e.source, e.target) for e in edges}),
        hidden_activities=hidden,
        total_paths=len(paths),
        caption=caption,
    )


def html_text(text: str) -> str:
    """Text for a Graphviz HTML-like label: XML-escaped, newlines as <BR/>, `\\` kept literal."""
    # Graphviz expands \N, \G, ... and folds \\ to \ even inside HTML labels, hence the doubling;
    # control characters are not allowed in XML: they are shown as escapes (\x1b, see
    # schemas.printable), and the non-characters U+FFFE/U+FFFF become U+FFFD.
    lines = re.split(r"\r\n|\r|\n", text)
    return "<BR/>".join(html.escape(CONTROL.sub("\ufffd", printable(line)), quote=True)
                        .replace("\\", "\\\\") for line in lines)


def _level(value: float, top: float, low: int, high: int) -> int:
    """A colour level in [low, high], logarithmic in value / top."""
    if top <= 0 or value <= 0:
        return low
    return low + round((high - low) * math.log1p(value) / math.log1p(top))


def _width(share: float) -> float:
    """Pen width 1..5 for a share (0, 1] of the largest value."""
    return 1 + 4 * math.sqrt(share)


def _attrs(**attrs: str | float) -> str:
    """DOT attributes; values starting with '<' are HTML-like labels, the rest are quoted."""
    out = []
    for name, value in attrs.items():
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        out.append(f"{name}={text}" if text.startswith("<") else f'{name}="{text}"')
    return "[" + ", ".join(out) + "]"


def _legend(options: MapOptions) -> str:
    """The legend line of the graph label."""
    rule = (
        "given by the caller"
        if options.bottlenecks is not None
        else f"median wait in the top 10% and ≥ {humanize_seconds(options.bottleneck_min_s)}"
    )
    width = "line width: transitions" if options.view == "frequency" else "label, width, colour: median wait"
    return (
        f'<FONT COLOR="{RED}"><B>red bold</B></FONT>: bottleneck ({html_text(rule)}) · '
        f'<FONT COLOR="{ORANGE}">orange dashed</FONT>: rework loop '
        f"(≥ {options.loop_share:.0%} of cases) · green dot: start · black dot: end · {width}"
    )


def to_dot(data: EventsLike | MapData, options: MapOptions = MapOptions(), *,
           title: str = "") -> str:
    """The process map as DOT text; every name goes into an escaped HTML-like label."""
    pmap = build_map(data, options)
    perf = options.view == "performance"
    ids = {a: f"n{i}" for i, a in enumerate(pmap.activities)}
    top_events = max(pmap.activities.values(), default=1)
    top_count = max((e.count for e in pmap.edges), default=1)
    top_wait = max((e.wait.median for e in pmap.edges), default=0.0)
    heading = [f"<B>{html_text(title)}</B>"] if title else []
    caption = [html_text(line) for line in textwrap.wrap(pmap.caption, 120)]
    label = "".join(line + BR_LEFT for line in [*heading, *caption, _legend(options)])
    lines = [
        "digraph process_map {",
        f'  graph [fontname="Helvetica", fontsize=11, labelloc="t", labeljust="l", nodesep=0.3, '
        f"ranksep=0.45, label=<{label}>];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, color="#2f4b7c"];',
        '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.7];',
        '  start [shape=circle, label="", width=0.22, fixedsize=true, style=filled, fillcolor="#2ca02c", '
        'color="#2ca02c", tooltip="start"];',
        '  end [shape=circle, label="", width=0.22, fixedsize=true, style=filled, fillcolor="black", '
        'tooltip="end"];',
        "  {rank=source; start} {rank=sink; end}",
    ]
    for name, n in pmap.activities.items():
        level = 1 + round(6 * math.sqrt(n / top_events))
        lines.append(
            f"  {ids[name]} "
            + _attrs(
                label=f'<{html_text(name)}<BR/><FONT POINT-SIZE="9">{n:,}</FONT>>',
                fillcolor=f"/blues9/{level}",
                fontcolor="white" if level >= 6 else "black",
                tooltip=f"{n:,} events",
            )
            + ";"
        )
    for source, ends in (("start", pmap.starts), ("end", pmap.ends)):
        for name, n in ends.items():
            pair = f"start -> {ids[name]}" if source == "start" else f"{ids[name]} -> end"
            style = _attrs(label=f"<{n:,}>", color=GREY, fontcolor=GREY, style="dotted")
            lines.append(f"  {pair} {style};")
    for e in pmap.edges:
        key = (e.source, e.target)
        wait = e.wait
        attrs: dict[str, str | float] = {
            "label": f"<{humanize_seconds(wait.median) if perf else f'{e.count:,}'}>",
            "penwidth": _width(wait.median / top_wait if perf and top_wait else e.count / top_count),
            "color": f"/blues9/{_level(wait.median, top_wait, 4, 9)}" if perf else "#3a3a3a",
            "tooltip": f"{e.count:,} transitions; wait median {humanize_seconds(wait.median)}, "
            f"mean {humanize_seconds(wait.mean)}, p90 {humanize_seconds(wait.p90)}, "
            f"max {humanize_seconds(wait.max)}",
        }
        if key in pmap.rework:
            attrs.update(color=ORANGE, fontcolor=ORANGE, style="dashed")
        if key in pmap.bottlenecks:
            attrs.update(color=RED, fontcolor=RED, style="bold,dashed" if key in pmap.rework else "bold")
            attrs["penwidth"] = max(float(attrs["penwidth"]), 3.5)
            attrs["label"] = f"<<B>{str(attrs['label'])[1:-1]}</B>>"
        lines.append(f"  {ids[e.source]} -> {ids[e.target]} {_attrs(**attrs)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot_text: str, timeout_s: float = 60, *, dot: str = "dot") -> str:
    """Lay out DOT text with Graphviz `dot -Tsvg`; MiningError when dot is missing or fails."""
    try:
        proc = subprocess.run(
            [dot, "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        raise MiningError(f"Graphviz {dot!r} not found: install Graphviz: apt-get install graphviz") from None
    except OSError as exc:
        raise MiningError(f"cannot run Graphviz {dot!r}: {exc}") from None
    except subprocess.TimeoutExpired:
        raise MiningError(f"Graphviz dot took longer than {timeout_s:g} s to lay out the map") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip()[:500]
        raise MiningError(f"Graphviz dot failed (exit {proc.returncode}): {detail}")
    return proc.stdout.decode()


def process_map_svg(
    data: EventsLike | MapData, options: MapOptions = MapOptions(), *, title: str = "",
    timeout_s: float = 60
) -> str:
    """The process map of the events as an SVG document."""
    return render_svg(to_dot(data, options, title=title), timeout_s)
