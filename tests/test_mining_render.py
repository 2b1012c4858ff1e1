"""Process maps: DOT generation, simplification, marks, escaping and SVG through real Graphviz."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mining
from mining.render import (
    MapOptions,
    View,
    build_map,
    html_text,
    humanize_seconds,
    process_map_svg,
    render_svg,
    to_dot,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"
ALL = MapOptions(paths=1.0)


def frame(cases: dict[str, Sequence[str | tuple[str, float]]]) -> pl.DataFrame:
    """Events per case; a bare activity comes 60 s after the previous one, (activity, s) after s."""
    rows = []
    for case, steps in cases.items():
        t = T0
        for step in steps:
            activity, gap = step if isinstance(step, tuple) else (step, 60.0)
            t += timedelta(seconds=gap)
            rows.append({"case_id": case, "activity": activity, "timestamp": t})
    return mining.frame_from_rows(rows)


def edge_lines(dot: str) -> dict[str, str]:
    """DOT edge statements keyed by 'src -> dst' (node ids), value = the attribute list."""
    return dict(re.findall(r"^  (\S+ -> \S+) (\[.*\]);$", dot, flags=re.M))


def attr(attrs: str, name: str) -> str:
    """One attribute's value from a DOT attribute list."""
    found = re.search(rf'\b{name}="([^"]*)"', attrs)
    assert found, (name, attrs)
    return found.group(1)


def activity_edges(dot: str) -> dict[str, str]:
    """Attribute lists of activity -> activity edges keyed by 'ab' (single-letter activity names)."""
    ids = dict(re.findall(r"^  (n\d+) \[label=<(\w)<BR/>", dot, flags=re.M))
    out = {}
    for key, attrs in edge_lines(dot).items():
        s, t = key.split(" -> ")
        if s in ids and t in ids:
            out[ids[s] + ids[t]] = attrs
    return out


def parse_svg(svg: str) -> ET.Element:
    """Parse an SVG document; raises on invalid XML."""
    return ET.fromstring(svg)


def svg_texts(svg: str) -> list[str]:
    """Every <text> of a parsed SVG document (parsing fails on invalid XML)."""
    root = parse_svg(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


SIMPLE = frame({"c1": "abc", "c2": "abc", "c3": "abc", "c4": "ac"})


def test_frequency_dot_has_nodes_paths_and_counts() -> None:
    """Each activity is a synthetic node labelled with its events; each path with its count."""
    dot = to_dot(SIMPLE, ALL)
    assert re.findall(r"^  (n\d+) \[label=<(\w)<BR/>", dot, flags=re.M) == [
        ("n0", "a"),
        ("n1", "c"),
        ("n2", "b"),
    ]
    assert '<FONT POINT-SIZE="9">4</FONT>' in dot  # a and c have 4 events, b has 3
    edges = edge_lines(dot)
    assert set(edges) == {"start -> n0", "n0 -> n2", "n2 -> n1", "n0 -> n1", "n1 -> end"}
    assert "label=<4>" in edges["start -> n0"] and "label=<4>" in edges["n1 -> end"]
    assert "label=<3>" in edges["n0 -> n2"] and "label=<1>" in edges["n0 -> n1"]
    assert "showing 3 of 3 activities, 5 of 5 paths" in dot


def test_pen_width_grows_with_count() -> None:
    """The most frequent path is drawn thickest in the frequency view."""
    width = {k: float(attr(v, "penwidth")) for k, v in activity_edges(to_dot(SIMPLE, ALL)).items()}
    assert width == {"ab": 5.0, "bc": 5.0, "ac": pytest.approx(1 + 4 * (1 / 3) ** 0.5, abs=0.01)}


# 10 cases a x b, 5 cases a y b, 1 case a z b: z is the rarest activity
THREE = frame({**{f"x{i}": "axb" for i in range(10)}, **{f"y{i}": "ayb" for i in range(5)}, "z": "azb"})


def test_activity_threshold_hides_the_least_frequent_and_says_so() -> None:
    """Hiding z projects it out (a -> b appears) and the caption names it with its events."""
    pmap = build_map(THREE, MapOptions(activities=0.8, paths=1.0))  # ceil(0.8 * 5) = 4 kept
    assert list(pmap.activities) == ["a", "b", "x", "y"]
    assert pmap.hidden_activities == {"z": 1}
    assert {(e.source, e.target, e.count) for e in pmap.edges} == {
        ("a", "x", 10), ("x", "b", 10), ("a", "y", 5), ("y", "b", 5), ("a", "b", 1),
    }  # fmt: skip
    assert pmap.caption == (
        "showing 4 of 5 activities, 7 of 7 paths; hidden: 1 activity with ≤ 1 events each (z)"
    )


def test_path_threshold_hides_rare_paths_but_keeps_every_activity_connected() -> None:
    """paths=0 keeps only the widest route to and from each activity; the caption counts the rest."""
    pmap = build_map(THREE, MapOptions(paths=0.0))
    shown = {(e.source, e.target) for e in pmap.edges}
    # start -> a -> {x, y, z} -> b -> end: every activity reachable from start and reaching end
    assert shown == {("a", "x"), ("a", "y"), ("a", "z"), ("x", "b"), ("y", "b"), ("z", "b")}
    assert pmap.starts == {"a": 16} and pmap.ends == {"b": 16}
    assert pmap.caption == "showing 5 of 5 activities, 8 of 8 paths"
    lean = build_map(frame({**{f"c{i}": "abcd" for i in range(5)}, "r": "acbd", "s": "adb"}), MapOptions())
    assert {(e.source, e.target) for e in lean.edges} == {("a", "b"), ("b", "c"), ("c", "d")}
    assert (
        lean.caption == "showing 4 of 4 activities, 5 of 11 paths; hidden: 6 paths with ≤ 1 transitions each"
    )


MALICIOUS = [
    "<script>alert(1)</script>",
    '"quoted"',
    "a & b",
    "back\\slash",
    "{x|y}",
    "new\nline",
    "\\N &lt;",
]


def test_malicious_names_render_escaped_through_real_dot() -> None:
    """Hostile activity names reach the SVG as plain escaped text, never as markup."""
    df = frame({f"c{i}": ["start", name, "end"] for i, name in enumerate(MALICIOUS)})
    svg = process_map_svg(df, MapOptions(paths=1.0), title="<script>t</script>")
    root = parse_svg(svg)  # valid XML
    assert not [el for el in root.iter() if el.tag.rsplit("}", 1)[-1].lower() == "script"]
    assert "<script" not in svg.lower()
    texts = svg_texts(svg)
    for name in MALICIOUS:
        lines = name.split("\n")
        assert all(line in texts for line in lines), (name, texts)
    assert "<script>t</script>" in texts
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=20))
def test_any_single_line_name_survives_dot_unchanged(name: str) -> None:
    """Whatever a single-line activity name holds, the SVG shows exactly that text."""
    if name != name.strip() or "  " in name:
        name = "x" + " ".join(name.split()) + "x"  # Graphviz trims and folds blanks
    svg = render_svg(to_dot(frame({"c": [name]})))
    assert name in svg_texts(svg)


def test_html_text_escapes_every_special_character() -> None:
    """HTML-like label text escapes XML specials, doubles backslashes and breaks lines."""
    assert html_text('<a & "b"> \\N\n{x|y}') == "&lt;a &amp; &quot;b&quot;&gt; \\\\N<BR/>{x|y}"
    assert html_text("bell\x07") == "bell\\\\x07"  # Graphviz folds the doubled \\ back to one


def test_humanize_seconds() -> None:
    """Durations read as people say them: seconds, minutes, hours, days."""
    assert [humanize_seconds(s) for s in (0, 0.5, 45, 90, 750, 11520, 172800, 1296000)] == [
        "0 s", "0.5 s", "45 s", "1.5 min", "12 min", "3.2 h", "2 d", "15 d",
    ]  # fmt: skip


PERF = frame(
    {
        **{f"c{i}": ["a", ("b", 11520.0), ("c", 172800.0)] for i in range(3)},
        **{f"d{i}": ["a", ("c", 60.0 * (i + 1)), ("d", 30.0)] for i in range(9)},
    }
)


def test_performance_view_labels_median_wait() -> None:
    """The performance view labels each path with its median wait and shades it by that wait."""
    edges = activity_edges(to_dot(PERF, MapOptions(view="performance", paths=1.0,
                                                   bottleneck_min_count=1)))
    assert "label=<3.2 h>" in edges["ab"]
    assert "label=<<B>2 d</B>>" in edges["bc"]  # also the bottleneck
    assert "label=<5 min>" in edges["ac"] and "label=<30 s>" in edges["cd"]
    shade = {k: int(attr(v, "color").rsplit("/", 1)[1]) for k, v in edges.items() if k != "bc"}
    assert shade["cd"] < shade["ac"] < shade["ab"] <= 9  # darker blue = longer wait


def test_bottleneck_is_top_decile_above_the_minimum() -> None:
    """Only paths in the top 10% of median waits and over the minimum are red and bold."""
    tiny = MapOptions(paths=1.0, bottleneck_min_count=1)  # PERF's slow path has 3 transitions
    pmap = build_map(PERF, tiny)  # 4 paths: top decile = the slowest one
    assert pmap.bottlenecks == {("b", "c")}
    dot = to_dot(PERF, tiny)
    marked = [k for k, v in edge_lines(dot).items() if 'color="#d62728"' in v and "bold" in v]
    assert len(marked) == 1
    assert build_map(PERF, MapOptions(paths=1.0, bottleneck_min_count=1,
                                      bottleneck_min_s=3 * 86400)).bottlenecks == set()
    assert build_map(SIMPLE, ALL).bottlenecks == set()  # one-minute waits are no bottleneck
    given_ = MapOptions(paths=1.0, bottlenecks=frozenset({("a", "c"), ("x", "y")}))
    assert build_map(PERF, given_).bottlenecks == {("a", "c")}


def test_a_rarely_taken_slow_path_is_no_bottleneck() -> None:
    """A slow path taken fewer than bottleneck_min_count times (default 10) is not marked."""
    assert build_map(PERF, MapOptions(paths=1.0)).bottlenecks == set()  # 3 transitions
    assert build_map(PERF, MapOptions(paths=1.0, bottleneck_min_count=3)).bottlenecks == {
        ("b", "c")}


def test_self_loops_and_loops_are_marked_as_rework() -> None:
    """Self-loops and paths on loops enough cases go round are orange and dashed; a legend says so."""
    df = frame({"r1": "aabd", "r2": "abcbd", "r3": "abd", "r4": "abd"})
    pmap = build_map(df, ALL)
    assert pmap.rework == {("a", "a"), ("b", "c"), ("c", "b")}
    dot = to_dot(df, ALL)
    rework = [v for v in edge_lines(dot).values() if 'color="#e8710a"' in v and 'style="dashed"' in v]
    assert len(rework) == 3
    assert "orange dashed</FONT>: rework loop (≥ 5% of cases)" in dot
    assert build_map(df, MapOptions(paths=1.0, loop_share=0.5)).rework == set()


def test_render_svg_reports_missing_or_failing_dot() -> None:
    """A missing `dot` says how to install Graphviz; a failing one says why."""
    with pytest.raises(mining.MiningError, match="apt-get install graphviz"):
        render_svg("digraph { a }", dot="/nonexistent/dot")
    with pytest.raises(mining.MiningError, match="Graphviz dot failed"):
        render_svg("digraph {")


def test_options_are_checked_and_empty_logs_render() -> None:
    """Bad shares or views are refused; a log without events still gives a valid SVG."""
    bad: dict[str, Any]
    for bad in ({"activities": 0.0}, {"paths": 1.5}, {"view": "heat"}, {"loop_share": -0.1}):
        with pytest.raises(mining.MiningError):
            MapOptions(**bad)
    svg = process_map_svg(mining.empty_frame(), MapOptions(view="performance"))
    assert "showing 0 of 0 activities, 0 of 0 paths" in " ".join(svg_texts(svg))


@pytest.mark.shared_data
def test_bpic2012_default_map_is_readable() -> None:
    """BPIC 2012 at the default threshold: all 24 activities, 45 of 137 paths, valid SVG."""
    from shared_logs_support import shared_events

    rows = [
        (e.event_id, e.case_id, e.activity, e.time_us, e.lifecycle, e.resource)
        for e in shared_events("bpic2012.xes.gz", "bpic2012")
    ]
    df = pl.DataFrame(
        rows,
        schema=["event_id", "case_id", "activity", "time_us", "lifecycle", "resource"],
        orient="row",
    ).select(
        "event_id", "case_id", "activity",
        pl.col("time_us").cast(pl.Datetime("us", "UTC")).alias("timestamp"),
        "lifecycle", "resource", pl.lit(None, pl.String).alias("team"),
        pl.lit(None, pl.String).alias("attributes"), pl.int_range(pl.len()).alias("seq"),
    )  # fmt: skip
    events = mining.prepare(df)
    pmap = build_map(events)
    assert (len(pmap.activities), len(pmap.edges) + len(pmap.starts) + len(pmap.ends)) == (24, 45)
    assert (
        pmap.caption
        == "showing 24 of 24 activities, 45 of 137 paths; hidden: 92 paths with ≤ 2,517 transitions each"
    )
    assert ("W_Nabellen offertes", "W_Valideren aanvraag") in pmap.bottlenecks  # 2.2 d median
    assert ("W_Nabellen offertes", "W_Nabellen offertes") in pmap.rework
    views: tuple[View, ...] = ("frequency", "performance")
    for view in views:
        root = parse_svg(process_map_svg(events, MapOptions(view=view), title="BPIC 2012"))
        groups = [g.get("class") for g in root.iter(f"{SVG}g")]
        assert (groups.count("node"), groups.count("edge")) == (26, 45)


def test_control_characters_in_names_render_as_visible_escapes_in_valid_xml() -> None:
    """Activity names, a case's steps and the title holding ESC, BEL, DEL, C1 and U+FFFF give an
    SVG (real Graphviz) that parses as XML and shows each control as its escape."""
    names = ["\x1b[31mred\x07", "tab\there\x7f\x85", "nul\x00\uffff"]
    svg = render_svg(to_dot(frame({"c1": names, "c2": names}), MapOptions(paths=1.0),
                            title="claims\x1b]0;pwned\x07"))
    shown = svg_texts(svg)  # parsing fails on invalid XML
    for expected in ("\\x1b[31mred\\x07", "tab\\x09here\\x7f\\x85", "nul\\x00\ufffd",
                     "claims\\x1b]0;pwned\\x07"):
        assert any(expected in text for text in shown), expected
    assert not any(c in svg for c in "\x1b\x07\x00\x7f\x85")
