"""Learned end activities end to end: `alerts evaluate` learns them once and keeps them in the
store, later rounds reuse them, and `doctor` and the process page show which, from how many
finished cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from conftest import backlight

from backlight.config import load
from backlight.doctor import check_end_activities, render_text
from backlight.web.server import running
from ingest.simulate import simulate
from storage import SQLiteStore
from storage.end_activities import EndActivityTables

TODAY = datetime.now(UTC).date()


def test_evaluate_keeps_learned_ends_and_doctor_and_the_page_show_them(tmp_path: Path) -> None:
    """No end_activities configured for claims: the first round learns the simulator's own ends
    and keeps them (version 1, from N finished cases); a later round keeps them as they are;
    doctor says "learned ... from N finished cases" with each share, and the process page
    lists them; the configured onboarding shows as configured."""
    db = tmp_path / "store.db"
    sim = simulate("claims", 600, seed=5)
    store = SQLiteStore(db)
    store.write(sim.events)
    store.close()
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[store]\nurl = "sqlite:///{db}"\n\n[[processes]]\nname = "claims"\n'
                   f'owner = "claims-lead@example.com"\nlast_reviewed = {TODAY.isoformat()}\n\n'
                   '[[processes]]\nname = "onboarding"\nowner = "ops@example.com"\n'
                   f'last_reviewed = {TODAY.isoformat()}\nend_activities = ["Send welcome pack"]\n')
    now = datetime.fromtimestamp(sim.events[-1].time_us / 1e6, UTC) + timedelta(hours=1)
    first = backlight("alerts", "evaluate", "--config", str(cfg), "--now", now.isoformat())
    assert "# claims: end activities kept since" in first.stderr
    truth = sorted(sim.ground_truth["end_activities"])
    tables = EndActivityTables(f"sqlite:///{db}")
    try:
        [kept] = tables.history("claims")
        assert sorted(kept.activities) == truth and kept.version == 1 and kept.cases >= 100
        later = now + timedelta(days=7)
        backlight("alerts", "evaluate", "--config", str(cfg), "--now", later.isoformat())
        assert tables.history("claims") == [kept]
    finally:
        tables.close()
    settings = load(cfg, environ={})
    shown = {f.check: f for f in check_end_activities(settings)}
    claims = shown["end activities claims"]
    assert claims.status == "OK"
    assert claims.detail.startswith(f"learned {now.date()} from {kept.cases} finished cases: ")
    for activity in kept.activities:
        assert f"{activity} ({kept.shares[activity]:.0%})" in claims.detail
    assert shown["end activities onboarding"].detail == "configured: Send welcome pack"
    with running(settings) as base:
        page = httpx.get(f"{base}/processes/claims", timeout=60).text
    section = page[page.index('id="end-activities"'):page.index('id="stuck"')]
    assert f"from {kept.cases} finished cases" in section
    assert all(f"<code>{a}</code>" in section for a in kept.activities)


def test_doctor_warns_where_no_end_activities_are_known_yet(tmp_path: Path) -> None:
    """A process with none configured and none learned (no store yet) is a WARN saying every
    case counts as open and what to do; nothing is created by looking."""
    cfg = tmp_path / "b.toml"
    db = tmp_path / "store.db"
    cfg.write_text(f'[store]\nurl = "sqlite:///{db}"\n\n[[processes]]\nname = "loans"\n')
    [finding] = check_end_activities(load(cfg, environ={}))
    assert finding.check == "end activities loans" and finding.status == "WARN"
    assert "every case counts as open" in finding.detail
    assert finding.hint is not None and "end_activities" in finding.hint
    assert not db.exists()


def test_doctor_shows_hostile_end_activity_names_escaped(tmp_path: Path) -> None:
    """End activities are event data: configured or learned, a name holding terminal escapes
    and a bell reaches doctor's text with those characters shown as escapes, never raw."""
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n\n[[processes]]\n'
                   'name = "loans"\nend_activities = ["Paid\\u001b[2J\\u0007"]\n')
    text = render_text(check_end_activities(load(cfg, environ={})), "b.toml")
    assert "\x1b" not in text and "\x07" not in text
    assert "Paid\\x1b[2J\\x07" in text
