"""The alert's own page in Debian's headless Chromium: from the alerts list to the page, its
chart drawn, and event text (an activity named ``<img src=x onerror=alert(1)>``, HTML case ids)
shown literally with no script run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import playwright.sync_api as sync_api  # a test dependency (pyproject [test]): missing = failing
import pytest
from alert_page_support import ACK_NOTE, SLOW, SLOW_KEY, alert_site

from backlight.web.server import running

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    made = alert_site(tmp_path_factory.mktemp("alert-browser") / "store.db")
    with running(made.settings) as url:
        yield url


@pytest.fixture(scope="module")
def page(base: str) -> Iterator[tuple[sync_api.Page, list[str]]]:
    """A page in Chromium and what it did that it must not (dialogs, script errors)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: .ci/install must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium); the browser tests need it")
    bad: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            tab = browser.new_context(base_url=base).new_page()
            tab.set_default_timeout(15_000)

            def dialog(d: sync_api.Dialog) -> None:
                bad.append(f"dialog: {d.message}")
                d.dismiss()

            tab.on("dialog", dialog)
            tab.on("pageerror", lambda exc: bad.append(f"page error: {exc}"))
            tab.on("console", lambda m: bad.append(m.text) if m.type == "error" else None)
            yield tab, bad
        finally:
            browser.close()


def test_alert_page_shows_event_text_literally_and_runs_no_script(
        page: tuple[sync_api.Page, list[str]]) -> None:
    """From the alerts list to the slowed step's alert: the heading, the chart's title, the
    evidence and the acknowledgement note show the payloads as text; the page holds no <img>,
    no dialog opened, no script error; the chart is drawn with its points."""
    tab, bad = page
    tab.goto("/alerts")
    tab.click(f"a.alert-link[href='/alerts/{quote(SLOW_KEY, safe='')}']")
    tab.wait_for_url("**/alerts/bottleneck%2Fonboarding%2F**")
    assert SLOW in tab.locator("h1.alert-title").inner_text()
    assert tab.locator("main img").count() == 0
    chart = tab.locator("svg.episode-chart")
    assert SLOW in (chart.get_attribute("aria-label") or "")
    assert chart.locator("circle.ep-dot").count() >= 20
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    timeline = tab.locator("#timeline").inner_text()
    assert f"note: {ACK_NOTE}" in timeline and "by alice" in timeline
    last = tab.locator("#timeline li.step").last
    assert SLOW in last.locator("dl.evidence").inner_text()
    tab.screenshot(path=str(Path(os.environ.get("BACKLIGHT_ARTIFACTS") or
                                 Path(__file__).resolve().parents[1] / "test-artifacts")
                            / "alert-page.png"), full_page=True)
    assert bad == []


def test_hostile_stuck_alert_page_keeps_its_cases_as_text(
        page: tuple[sync_api.Page, list[str]]) -> None:
    """The hostile process's stuck alert: its step and case ids (HTML and script) are listed
    as text; nothing runs."""
    tab, bad = page
    key = "stuck/hostile/stuck at <svg onload=alert(2)>"
    tab.goto(f"/alerts/{quote(key, safe='')}")
    assert "stuck at <svg onload=alert(2)>" in tab.locator("h1.alert-title").inner_text() or \
        "<svg onload=alert(2)>" in tab.locator("article.alert-card").inner_text()
    cases = tab.locator("#cases code").all_inner_texts()
    assert "case-0-<img src=x onerror=alert('case')>" in cases
    assert tab.locator("main img, main svg[onload], main script").count() == 0
    assert bad == []
