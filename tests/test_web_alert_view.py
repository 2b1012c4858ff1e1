"""The alert page's pure parts: the timeline built from stored changes (who acted, in order,
an acknowledgement not yet announced) and the episode chart's SVG (escaped title, marks)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from alerts.episode_series import Band, EpisodeSeries
from backlight.web.alert_view import label, timeline
from backlight.web.charts import episode_chart
from schemas.alerts import Acknowledgement, Alert, AlertChange, Change, Finding, Severity, Silence, Status

T0 = datetime(2026, 5, 11, 16, tzinfo=UTC)
HOSTILE = "<img src=x onerror=alert(1)>"


def alert(**state: object) -> Alert:
    f = Finding("bottleneck", "p", f"wait before {HOSTILE}", Severity.WARNING, "slow",
                {"activity": HOSTILE, "recent": {"median_days": 3.1}}, {}, date(2026, 4, 29))
    return replace(Alert.from_finding(f, Status.FIRING, None, T0), **state)  # type: ignore[arg-type]


def test_timeline_is_oldest_first_with_who_acted() -> None:
    """Stored newest first, shown oldest first: fired, silenced (by whom, why), escalated,
    resolved; the silence is found by its id even after it expired."""
    silence = Silence("s1", T0 + timedelta(days=1), "bob", "known issue", T0)
    changes = [
        AlertChange(Change.RESOLVED, alert(status=Status.RESOLVED), T0 + timedelta(days=3)),
        AlertChange(Change.ESCALATED, alert(escalated_at=T0 + timedelta(days=2)),
                    T0 + timedelta(days=2)),
        AlertChange(Change.SILENCED, alert(silenced_by="s1"), T0 + timedelta(hours=2)),
        AlertChange(Change.FIRING, alert(), T0),
    ]
    steps = timeline(changes, None, [silence])
    assert [s.label for s in steps] == ["Fired", "Silenced", "Escalated", "Resolved"]
    assert steps[1].who == ("by bob until 2026-05-12 16:00 UTC: known issue",)
    assert steps[0].evidence[0].label == "activity" and steps[0].evidence[0].text == HOSTILE
    assert steps[-1].status == "resolved"


def test_an_acknowledgement_not_yet_announced_is_its_own_step() -> None:
    """Recorded after the last change but not announced: a step at its time with its note; once
    announced (an acknowledged change at its time) it is not shown twice."""
    ack = Acknowledgement("k", "alice", T0 + timedelta(hours=5), "on it")
    steps = timeline([AlertChange(Change.FIRING, alert(), T0)], ack, [])
    assert [(s.label, s.who) for s in steps][-1] == ("Acknowledged", ("by alice", "note: on it"))
    announced = AlertChange(Change.ACKNOWLEDGED, alert(acknowledged_by="alice",
                                                       acknowledged_at=ack.at), ack.at)
    steps = timeline([announced, AlertChange(Change.FIRING, alert(), T0)], ack, [])
    assert [s.label for s in steps] == ["Fired", "Acknowledged"]
    assert steps[-1].who == ("by alice", "note: on it")


def test_changes_this_page_has_no_words_for_read_by_their_name() -> None:
    """The kinds other branches add have words; an unknown one is shown by its own name."""
    assert label("recurred") == "Recurred" and label("confirmed") == "Resolution confirmed"
    assert label("reset_baseline") == "Reset baseline"


def series(points: tuple[tuple[date, float], ...], band: Band | None) -> EpisodeSeries:
    return EpisodeSeries(f"Daily median wait before {HOSTILE}", "business days", points,
                         date(2026, 3, 2), date(2026, 3, 31), date(2026, 3, 2),
                         date(2026, 3, 13), band, date(2026, 3, 16))


def test_episode_chart_escapes_its_title_and_marks_onset_band_and_points() -> None:
    """One dot per point, left to right; the band between its low and high; the onset line at
    its day; the title escaped; only numbers, dates and fixed words inside."""
    points = tuple((date(2026, 3, 2) + timedelta(days=i), 1.0 + (i >= 14) * 3) for i in range(30))
    svg = str(episode_chart(series(points, Band(1.0, 0.8, 1.2))))
    assert HOSTILE not in svg and "&lt;img src=x onerror=alert(1)&gt;" in svg
    xs = [float(x) for x in re.findall(r'<circle class="ep-dot" cx="([\d.]+)"', svg)]
    assert len(xs) == 30 and xs == sorted(xs)
    onset = re.search(r'<line class="ep-onset" x1="([\d.]+)"', svg)
    assert onset and float(onset.group(1)) == xs[14]
    band = re.search(r'<rect class="ep-band" x="[\d.]+" y="([\d.]+)" width="[\d.]+" '
                     r'height="([\d.]+)"/>', svg)
    ys = [float(y) for y in re.findall(r'class="ep-dot" cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert band
    top, height = float(band.group(1)), float(band.group(2))
    assert top < ys[0] < top + height  # a baseline point inside its band
    assert ys[20] < top  # an episode point above it (SVG y grows downwards)
    assert "nan" not in svg.lower() and "inf" not in svg.lower()


def test_episode_chart_without_points_or_band_still_draws() -> None:
    """No point in the span: the axes and a note; no band when the baseline had no point."""
    svg = str(episode_chart(series((), None)))
    assert "no data in this span" in svg and "ep-band" not in svg and "ep-dot" not in svg
    share = replace(series(((date(2026, 3, 2), 0.25),), None), unit="share")
    assert "%" in str(episode_chart(share))
