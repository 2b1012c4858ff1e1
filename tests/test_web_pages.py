"""The server-rendered pages over a real server: content, escaping, window, forms and sign-in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from web_support import (
    HOSTILE_PROCESS,
    READER_TOKEN,
    WRITER_TOKEN,
    evaluate_alerts,
    fill_store,
    review_day,
    web_settings,
)

from alerts.state import open_alert_state
from backlight.config import Settings
from backlight.web.charts import sparkline
from backlight.web.forms import FormError, parse_until, safe_next
from backlight.web.server import running

PROCESSES = ("onboarding", "payments", "claims", HOSTILE_PROCESS)
RAW = ("<script>alert", "<img src=x", "<svg onload", "<b>bold</b>")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    path: Path = tmp_path_factory.mktemp("pages") / "store.db"
    nows = fill_store(path, cases=400)
    settings = web_settings(path)
    evaluate_alerts(settings, nows)
    with running(settings) as base:
        yield base, settings


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


@contextmanager
def signed_in(base: str, token: str = WRITER_TOKEN) -> Iterator[httpx.Client]:
    """A client that signed in through the /login form (session + CSRF cookies)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        form = client.get("/login")
        r = client.post("/login", data={"csrf_token": csrf_of(form.text), "token": token,
                                        "next": "/"})
        assert r.status_code == 303, r.text
        yield client


def assert_escaped(html: str) -> None:
    for raw in RAW:
        assert raw not in html, f"raw {raw!r} in the page"


def test_pages_show_every_process(site: tuple[str, Settings]) -> None:
    """The overview lists every process with a link, each process page and the alerts page load."""
    base, _ = site
    overview = httpx.get(base + "/")
    assert overview.status_code == 200
    for name in PROCESSES:
        assert f'href="/processes/{name}?window=all"' in overview.text
        page = httpx.get(f"{base}/processes/{name}")
        assert page.status_code == 200 and f"<h1 class=\"process-title\">{name}</h1>" in page.text
        assert f'src="/api/processes/{name}/map.svg?' in page.text
    alerts = httpx.get(base + "/alerts")
    assert alerts.status_code == 200 and "stuck at Assessment" in alerts.text
    assert "no owner" in overview.text  # claims and hostile have none


def test_process_page_shows_stuck_cases_variants_and_handoffs(site: tuple[str, Settings]) -> None:
    """The claims page lists its stuck cases at Assessment, its variants and team hand-offs."""
    base, _ = site
    html = httpx.get(f"{base}/processes/claims").text
    stuck = httpx.get(f"{base}/api/processes/claims/stuck").json()
    assert stuck and f"<code>{stuck[0]['case_id']}</code>" in html
    assert '<span class="step">First notice of loss</span>' in html
    assert '<span class="team">back-office/claims-intake</span>' in html
    assert "/api/processes/claims/model.bpmn?window=all" in html
    assert "/api/processes/claims/events.xes?window=all" in html


def test_process_page_shows_conformance_to_the_documented_model(
        site: tuple[str, Settings]) -> None:
    """Payments has a documented model: its page says how many cases follow it and names the
    activities that deviate, as the API's conformance figures do."""
    base, _ = site
    html = httpx.get(f"{base}/processes/payments").text
    checked = httpx.get(f"{base}/api/processes/payments").json()["conformance"]
    assert 0 < checked["fitting_cases"] < checked["cases"]
    section = html[html.index('id="conformance"'):]
    assert (f"<strong>{checked['fitting_cases']}</strong> of {checked['cases']} cases follow"
            in section)
    assert "Beneficiary bank enquiry" in section.split("</section>")[0]


def test_hostile_data_is_escaped_everywhere(site: tuple[str, Settings]) -> None:
    """Activities, teams and case ids holding HTML show as text on every page."""
    base, _ = site
    page = httpx.get(f"{base}/processes/{HOSTILE_PROCESS}").text
    assert "&lt;script&gt;alert(&#39;activity&#39;)&lt;/script&gt;" in page
    assert "team&lt;0&gt;" in page
    assert_escaped(page)
    for path in ("/", "/alerts", f"/processes/{HOSTILE_PROCESS}?window=4w&view=performance"):
        assert_escaped(httpx.get(base + path).text)
    # a page's own query text never comes back raw either
    odd = httpx.get(base + "/processes/claims?window=<script>alert(1)</script>&view=<svg onload=x>")
    assert odd.status_code == 200
    assert_escaped(odd.text)


def test_window_control_changes_the_figures(site: tuple[str, Settings]) -> None:
    """Choosing "last 4 weeks" shows the API's (smaller) case counts for that window."""
    base, _ = site

    def cases(window: str) -> dict[str, str]:
        html = httpx.get(f"{base}/?window={window}").text
        rows = re.findall(r'href="/processes/([^"?]+)\?window=\w+">.*?class="num cases">(\d+)<',
                          html, re.S)
        return dict(rows)

    every, recent = cases("all"), cases("4w")
    api = {p["name"]: str(p["cases"]) for p in httpx.get(f"{base}/api/processes?window=4w").json()}
    assert recent == api
    assert int(recent["onboarding"]) < int(every["onboarding"]) == 400
    html = httpx.get(f"{base}/processes/onboarding?window=4w").text
    assert 'aria-current="true">last 4 weeks<' in html
    assert "map.svg?window=4w&amp;view=frequency" in html


def test_forms_without_a_valid_csrf_token_are_refused(site: tuple[str, Settings]) -> None:
    """A signed-in writer's form post without (or with a foreign) CSRF token gets 403 and
    records nothing."""
    base, settings = site
    key = "stale_review/payments/review"
    state = open_alert_state(settings.store.url)
    try:
        reviews, acks = len(state.reviews("payments")), dict(state.acknowledgements())
        silences = len(state.silences())
        with signed_in(base) as client:
            until = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
            posts = [("/processes/payments/review", {"note": "x"}),
                     (f"/alerts/{key}/ack", {"note": "x"}),
                     (f"/alerts/{key}/silence", {"until": until, "why": "x"})]
            for path, data in posts:
                for token in (None, "forged", csrf_of(httpx.get(base + "/login").text)):
                    body = dict(data) if token is None else {**data, "csrf_token": token}
                    r = client.post(path, data=body)
                    assert r.status_code == 403, (path, token, r.status_code)
                    assert "CSRF" in r.text
        assert len(state.reviews("payments")) == reviews
        assert state.acknowledgements() == acks and len(state.silences()) == silences
    finally:
        state.close()
    process = next(p for p in httpx.get(f"{base}/api/processes").json() if p["name"] == "payments")
    assert process["reviewed_by"] is None


def test_review_through_the_form_is_the_cli_record(site: tuple[str, Settings]) -> None:
    """A signed-in writer marks claims reviewed: the page, the API and the alert state show
    the review by alice (the record `backlight review` writes)."""
    base, settings = site
    with signed_in(base) as client:
        page = client.get("/processes/claims")
        assert "recorded as alice" in page.text
        r = client.post("/processes/claims/review",
                        data={"csrf_token": csrf_of(page.text), "note": "<script>alert('n')</script>",
                              "back": "/processes/claims?window=all#reviews"})
        assert r.status_code == 303
        assert r.headers["location"] == "/processes/claims?window=all&done=reviewed#reviews"
        after = client.get(r.headers["location"])
    assert "Review recorded." in after.text
    assert "<td>alice</td>" in after.text and "&lt;script&gt;alert(&#39;n&#39;)" in after.text
    assert_escaped(after.text)
    process = next(p for p in httpx.get(f"{base}/api/processes").json() if p["name"] == "claims")
    state = open_alert_state(settings.store.url)
    try:
        review = state.reviews("claims")[0]
    finally:
        state.close()
    assert review.by == "alice"
    assert (process["reviewed_by"], process["last_reviewed"]) == (
        "alice", review_day(settings, "claims", review.at))


def test_acknowledge_and_silence_through_the_forms(site: tuple[str, Settings]) -> None:
    """Acknowledge one alert and silence another: both recorded as alice, shown on /alerts
    in their sections, notes escaped."""
    base, settings = site
    ack_key, silence_key = "no_owner/claims/owner", "stale_review/hostile/review"
    until = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()
    with signed_in(base) as client:
        token = csrf_of(client.get("/alerts").text)
        r = client.post(f"/alerts/{ack_key}/ack", data={"csrf_token": token,
                                                        "note": "<img src=x onerror=alert(9)>"})
        assert (r.status_code, r.headers["location"]) == (303, "/alerts?done=acknowledged")
        r = client.post(f"/alerts/{silence_key}/silence", data={
            "csrf_token": token, "until": until, "why": "<b>bold</b> migration", "back": "//evil"})
        assert (r.status_code, r.headers["location"]) == (303, "/alerts?done=silenced")
        html = client.get("/alerts").text
    acknowledged = html.split('id="acknowledged"')[1].split('id="silenced"')[0]
    silenced = html.split('id="silenced"')[1].split('id="resolved"')[0]
    assert ack_key in acknowledged and "Acknowledged by <strong>alice</strong>" in acknowledged
    assert silence_key in silenced and "&lt;b&gt;bold&lt;/b&gt; migration" in silenced
    assert_escaped(html)
    state = open_alert_state(settings.store.url)
    try:
        assert state.acknowledgements()[ack_key].by == "alice"
        assert any(s.key == silence_key and s.by == "alice" for s in state.silences())
    finally:
        state.close()


def test_sign_in_refuses_a_wrong_token_and_foreign_next(site: tuple[str, Settings]) -> None:
    """A wrong token gets 401 and no session; `next` only ever leads to a path of this site."""
    base, _ = site
    with httpx.Client(base_url=base) as client:
        token = csrf_of(client.get("/login").text)
        wrong = client.post("/login", data={"csrf_token": token, "token": "nope", "next": "/"})
        assert wrong.status_code == 401 and "not known" in wrong.text
        assert "backlight_session" not in client.cookies
        no_csrf = client.post("/login", data={"token": WRITER_TOKEN, "next": "/"})
        assert no_csrf.status_code == 403 and "backlight_session" not in client.cookies
        for target, expected in (("//evil.example/x", "/"), ("https://evil.example/", "/"),
                                 ("/\\evil.example", "/"), ("/alerts?x=1", "/alerts?x=1")):
            r = client.post("/login", data={"csrf_token": token, "token": WRITER_TOKEN,
                                            "next": target})
            assert (r.status_code, r.headers["location"]) == (303, expected), target
        assert "HttpOnly" in r.headers["set-cookie"] and "samesite=strict" in \
            r.headers["set-cookie"].lower()


def test_reader_and_anonymous_see_no_forms(site: tuple[str, Settings]) -> None:
    """Anonymous visitors get a "sign in to act" link, a read-only user a note; no action forms."""
    base, _ = site
    anonymous = httpx.get(f"{base}/processes/claims").text
    assert "Sign in to act" in anonymous and 'action="/processes/claims/review"' not in anonymous
    with signed_in(base, READER_TOKEN) as client:
        html = client.get("/alerts").text
        assert "signed in as <strong>rita</strong>" in html and "may read but not act" in html
        assert "/ack" not in html
        r = client.post("/processes/claims/review", data={"csrf_token": csrf_of(html)})
        assert r.status_code == 403


def test_sign_out_ends_the_session(site: tuple[str, Settings]) -> None:
    """Signing out (with the form's token) removes the session: the header offers sign-in again."""
    base, _ = site
    with signed_in(base) as client:
        html = client.get("/").text
        assert "signed in as <strong>alice</strong>" in html
        r = client.post("/logout", data={"csrf_token": csrf_of(html)})
        assert r.status_code == 303 and "backlight_session" not in client.cookies
        assert "Signed out." in client.get(r.headers["location"]).text


def test_first_page_sets_the_csrf_nonce_cookie_once(site: tuple[str, Settings]) -> None:
    """The first page sets an HttpOnly, SameSite=Strict nonce cookie; later pages keep it and
    carry the same form token."""
    base, _ = site
    with httpx.Client(base_url=base) as client:
        first = client.get("/login")
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("backlight_csrf=") and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower() and "Path=/" in cookie
        assert "set-cookie" not in client.get("/alerts").headers
        second = client.get("/login?next=/alerts")
        assert "set-cookie" not in second.headers
        assert csrf_of(first.text) == csrf_of(second.text)
        assert second.headers["cache-control"] == "no-store"


def test_helpers_keep_redirects_local_and_charts_numeric() -> None:
    """`next`/`back` stay on this site; a silence must end in the future; a sparkline is
    numbers and escaped text only."""
    assert [safe_next(t) for t in ("/alerts", "//x.example", "https://x.example", "/\\x",
                                   "alerts", None, "/a\nb")] == ["/alerts"] + ["/"] * 6
    assert parse_until("2999-01-02").isoformat() == "2999-01-02T00:00:00+00:00"
    for bad in ("2000-01-01", "soon", ""):
        with pytest.raises(FormError):
            parse_until(bad)
    svg = str(sparkline([3.0, 1.0, 2.0], "<script>x</script>"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and 'points="3.0,3.0 60.0,25.0' in svg
