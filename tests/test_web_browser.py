"""The pages in Debian's headless Chromium driven by Playwright: the owner's journey, and hostile
event data that must show as text and never run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import playwright.sync_api as sync_api  # a test dependency (pyproject [test]): missing = failing
import pytest
from web_support import HOSTILE_PROCESS, WRITER_TOKEN, evaluate_alerts, fill_store, web_settings

from backlight.web.server import running

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[1]
IMAGE_LOADED = """(want) => { const i = document.getElementById('map-img');
  return i && i.complete && i.naturalWidth > 0 && i.src.includes(want); }"""


def artifacts() -> Path:
    folder = Path(os.environ.get("BACKLIGHT_ARTIFACTS") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: .ci/install must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium); the browser tests need it")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("browser") / "store.db"
    nows = fill_store(path, cases=400)
    settings = web_settings(path)
    evaluate_alerts(settings, nows)
    with running(settings) as url:
        yield url


@dataclass
class Watch:
    """What a page did that it must not: dialogs, console errors, script errors, and requests
    to any host other than the test server."""

    host: str
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def attach(self, page: sync_api.Page) -> None:
        def dialog(d: sync_api.Dialog) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        def console(msg: sync_api.ConsoleMessage) -> None:
            if msg.type == "error" or "Refused to" in msg.text:
                self.errors.append(msg.text)

        def request(r: sync_api.Request) -> None:
            parts = urlsplit(r.url)
            if parts.scheme not in ("data", "blob", "about") and parts.netloc != self.host:
                self.foreign.append(r.url)

        page.on("dialog", dialog)
        page.on("console", console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("request", request)

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a dialog opened: {self.dialogs}"
        assert self.errors == [], f"console or script errors: {self.errors}"
        assert self.foreign == [], f"requests to other hosts: {self.foreign}"


@pytest.fixture()
def page(browser: sync_api.Browser, base: str) -> Iterator[sync_api.Page]:
    """A fresh browser context (no cookies) whose page is watched; clean at the end or fail."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=base)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    watch = Watch(urlsplit(base).netloc)
    watch.attach(tab)
    try:
        yield tab
        watch.assert_clean()
    finally:
        context.close()


def shot(page: sync_api.Page, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"{name}.png"), full_page=True)


def transform(page: sync_api.Page) -> str:
    return str(page.eval_on_selector("#map-stage", "e => e.style.transform"))


def test_playwright_drives_debian_chromium(browser: sync_api.Browser, base: str) -> None:
    """Smoke: Playwright launches /usr/bin/chromium, loads a page and runs its script."""
    assert browser.version, "no browser version: Playwright cannot talk to this Chromium"
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(base + "/")
        assert "Backlight" in tab.title()
        assert tab.evaluate("() => 6 * 7") == 42
    finally:
        context.close()


def test_owner_explores_a_process_map(page: sync_api.Page) -> None:
    """Overview -> claims; switching the view and a threshold reloads the map image in place;
    zoom buttons, the wheel and dragging move the map."""
    page.goto("/")
    assert page.locator("tr.process-row").count() == 4
    shot(page, "overview")
    page.click("a[href^='/processes/claims']")
    page.wait_for_url("**/processes/claims**")
    page.wait_for_function(IMAGE_LOADED, arg="view=frequency")
    shot(page, "process-frequency")

    page.click("label.seg:has-text('performance')")
    page.wait_for_function(IMAGE_LOADED, arg="view=performance")
    assert "view=performance" in page.url, "the address keeps the chosen view"
    assert page.locator("h1.process-title").inner_text() == "claims", "no reload to another page"
    shot(page, "process-performance")

    page.fill("input[name=paths]", "0.5")
    page.wait_for_function(IMAGE_LOADED, arg="paths=0.5")
    assert page.locator("output[data-for=paths]").inner_text() == "50%"

    before = transform(page)
    page.click("button[data-zoom=in]")
    zoomed = transform(page)
    assert "scale(1.25)" in zoomed and zoomed != before
    box = page.locator("#map-viewport").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -300)
    page.wait_for_function("(t) => document.getElementById('map-stage').style.transform !== t",
                           arg=zoomed)
    wheeled = transform(page)
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 120, cy + 60, steps=5)
    page.mouse.up()
    dragged = transform(page)
    assert dragged != wheeled and "translate(" in dragged
    page.click("button[data-zoom=reset]")
    assert transform(page) == "translate(0px, 0px) scale(1)"


def test_owner_signs_in_reviews_acknowledges_and_silences(page: sync_api.Page) -> None:
    """Sign in with the writer token, mark payments reviewed, acknowledge one alert and silence
    another: the pages then show them as reviewed, acknowledged and silenced, by alice."""
    page.goto("/login?next=/processes/payments")
    page.fill("input[name=token]", WRITER_TOKEN)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url("**/processes/payments")
    assert "signed in as alice" in page.locator("header.top").inner_text()
    assert "recorded as alice" in page.locator("#reviews").inner_text()
    page.fill(".review-form input[name=note]", "checked the SLA and owners")
    page.click(".review-form button[type=submit]")
    page.wait_for_url("**done=reviewed**")
    assert page.locator(".flash").inner_text() == "Review recorded."
    reviews = page.locator("table.reviews").inner_text()
    assert "alice" in reviews and "checked the SLA and owners" in reviews

    page.goto("/alerts")
    acked = page.locator("#open article.alert-card", has_text="stuck/claims/stuck at Assessment")
    acked.locator(".ack-form input[name=note]").fill("Assessment team is on it")
    acked.locator(".ack-form button[type=submit]").click()
    page.wait_for_url("**done=acknowledged**")
    silenced = page.locator("#open article.alert-card", has_text="no_owner/claims/owner")
    silenced.locator(".silence-form input[name=why]").fill("owner being appointed")
    silenced.locator(".silence-form button[type=submit]").click()
    page.wait_for_url("**done=silenced**")

    acknowledged = page.locator("#acknowledged").inner_text()
    assert "stuck/claims/stuck at Assessment" in acknowledged
    assert "Acknowledged by alice" in acknowledged and "Assessment team is on it" in acknowledged
    in_silence = page.locator("#silenced").inner_text()
    assert "no_owner/claims/owner" in in_silence and "owner being appointed" in in_silence
    shot(page, "alerts")


def test_hostile_event_data_never_runs(page: sync_api.Page) -> None:
    """Payloads in activities, teams and case ids (variants, hand-offs, stuck cases, a stuck
    alert's evidence) show as text on the hostile process page, the overview and the alerts
    page: no dialog, no script or CSP error, no foreign request."""
    page.goto(f"/processes/{HOSTILE_PROCESS}")
    page.wait_for_function(IMAGE_LOADED, arg="view=frequency")
    steps = page.locator("#variants .step").all_inner_texts()
    assert "<script>alert('activity')</script>" in steps
    assert '"><img src=x onerror=alert(1)>' in steps
    assert page.locator("#variants img, #variants script, #variants svg[onload]").count() == 0
    assert "team<0>" in page.locator("#handoffs").inner_text()
    assert "case-0-<img src=x onerror=alert('case')>" in page.locator(
        "#stuck code").all_inner_texts()
    assert page.locator("#stuck img, #alerts img, #alerts svg[onload]").count() == 0
    shot(page, "hostile")
    page.click("label.seg:has-text('performance')")
    page.wait_for_function(IMAGE_LOADED, arg="view=performance")
    page.goto(f"/processes/{HOSTILE_PROCESS}?window=4w")
    page.wait_for_function(IMAGE_LOADED, arg="window=4w")
    for path in ("/", "/alerts"):
        page.goto(path)
        page.wait_for_load_state("load")
    card = page.locator("article.alert-card", has_text="stuck at <svg onload=alert(2)>")
    card.locator("summary").click()  # the evidence: the stuck cases' ids and steps
    assert "case-0-<img src=x onerror=alert('case')>" in card.locator("dl.evidence").inner_text()
    assert card.locator("img, script, svg[onload]").count() == 0
    page.goto(f"/api/processes/{HOSTILE_PROCESS}/map.svg")  # the SVG opened on its own
    page.wait_for_load_state("load")
