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

from backlight.config import Settings
from backlight.web.charts import sparkline
from backlight.web.forms import FormError, duration, parse_until, percent, safe_next
from backlight.web.server import running
from storage import open_alert_state

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
    """The claims page lists its stuck cases at Assessment, its variants, team hand-offs, its
    rework loops, and its alerts with their history."""
    base, _ = site
    html = httpx.get(f"{base}/processes/claims").text
    stuck = httpx.get(f"{base}/api/processes/claims/stuck").json()
    assert stuck and f"<code>{stuck[0]['case_id']}</code>" in html
    loops = html.split('id="rework"')[1].split("</section>")[0]
    assert '<ul class="loops">' in loops and "Request missing documents" in loops
    alerts = html.split('id="alerts"')[1].split('id="reviews"')[0]
    assert "stuck/claims/stuck at Assessment" in alerts
    assert '<table class="mini history">' in alerts and "<td>firing</td>" in alerts
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
    """Activities, teams and case ids holding HTML show as text on every page: in the
    variants, the hand-offs, the stuck cases and the stuck alerts (key, summary, evidence)."""
    base, _ = site
    page = httpx.get(f"{base}/processes/{HOSTILE_PROCESS}").text
    assert "&lt;script&gt;alert(&#39;activity&#39;)&lt;/script&gt;" in page
    assert "team&lt;0&gt;" in page
    case = "case-0-&lt;img src=x onerror=alert(&#39;case&#39;)&gt;"
    stuck = page.split('id="stuck"')[1].split("</section>")[0]
    assert f"<code>{case}</code>" in stuck and "<td>&lt;svg onload=alert(2)&gt;</td>" in stuck
    assert_escaped(page)
    alerts = httpx.get(base + "/alerts").text
    assert "stuck at &lt;svg onload=alert(2)&gt;" in alerts and f"<td>{case}</td>" in alerts
    for html in (alerts, httpx.get(base + "/").text,
                 httpx.get(f"{base}/processes/{HOSTILE_PROCESS}?window=4w&view=performance").text):
        assert_escaped(html)
    # a page's own query text never comes back raw either
    odd = httpx.get(base + "/processes/claims?window=<script>alert(1)</script>&view=<svg onload=x>")
    assert odd.status_code == 200
    assert_escaped(odd.text)


def overview_rows(html: str) -> dict[str, tuple[str, str]]:
    """The overview's rows by process name: (the row's classes, the row's HTML)."""
    rows = re.findall(r'<tr class="process-row([^"]*)">(.*?)</tr>', html, re.S)
    named = {}
    for classes, row in rows:
        found = re.search(r'<a href="/processes/[^"?]+\?window=\w+">([^<]+)</a>', row)
        assert found, row
        named[found.group(1)] = (classes, row)
    return named


def test_overview_row_shows_each_figure_and_flags_ownerless_and_stale(
        site: tuple[str, Settings]) -> None:
    """Each overview row shows the API's open cases, median throughput, a weekly trend chart
    with one point per week, SLA met, rework share, open alerts by severity and owner; the
    ownerless and review-overdue rows are marked (claims has no owner, hostile was never
    reviewed; onboarding has its owner)."""
    base, _ = site
    api = {p["name"]: p for p in httpx.get(f"{base}/api/processes").json()}
    rows = overview_rows(httpx.get(base + "/").text)
    assert set(rows) == set(api) == set(PROCESSES)
    for name, p in api.items():
        classes, row = rows[name]
        assert f'<td class="num open-cases">{p["open_cases"]}</td>' in row, name
        assert f'<td class="num median">{duration(p["median_case_seconds"])}</td>' in row, name
        points = re.search(r'<polyline class="spark-line" points="([^"]+)"', row)
        assert (len(points.group(1).split()) if points else min(len(p["weekly"]), 1)) == len(
            p["weekly"]), name
        sla = row.split('<td class="num sla">')[1].split("</td>")[0]
        assert (percent(p["sla_met"]) in sla) if p["sla_met"] is not None else "—" in sla
        assert f'<td class="num">{percent(p["rework_share"])}</td>' in row, name
        badges = re.findall(r'class="badge sev-(\w+)" href="/alerts">(\d+) (\w+)</a>', row)
        assert {sev: int(n) for sev, n, again in badges if sev == again} == p["open_alerts"]
        assert len(badges) == len(p["open_alerts"]), name
        owner = row.split('<td class="owner">')[1].split("</td>")[0]
        assert (p["owner"] in owner) if p["owner"] else "ownerless" in owner, name
        assert ("is-ownerless" in classes) == (p["owner"] is None), name
        assert ("is-stale" in classes) == p["review_stale"], name
    assert "is-ownerless" in rows["claims"][0] and "is-ownerless" not in rows["onboarding"][0]
    assert "is-stale" in rows["hostile"][0] and "never" in rows["hostile"][1]
    assert sum(sum(p["open_alerts"].values()) for p in api.values()) > 0
    assert api["onboarding"]["sla_met"] is not None and len(api["claims"]["weekly"]) > 1


def test_window_applies_to_the_whole_process_page(site: tuple[str, Settings]) -> None:
    """With "last 4 weeks" chosen, the claims page's figures, variants, hand-offs and stuck
    cases are the API's for that window, the map and both downloads are of that window, and
    the window links keep the map's view and thresholds."""
    base, _ = site
    params = "view=performance&activities=0.5&paths=0.3"
    html = httpx.get(f"{base}/processes/claims?window=4w&{params}").text
    whole = httpx.get(f"{base}/api/processes/claims").json()
    recent = httpx.get(f"{base}/api/processes/claims", params={"window": "4w"}).json()
    listed = {p["name"]: p for p in httpx.get(f"{base}/api/processes?window=4w").json()}
    stuck = httpx.get(f"{base}/api/processes/claims/stuck", params={"window": "4w"}).json()
    assert recent["cases"] < whole["cases"]
    assert f'<span class="figure-value fig-cases">{recent["cases"]}</span>' in html
    assert f'<span class="figure-value fig-open">{listed["claims"]["open_cases"]}</span>' in html
    variants = html.split('id="variants"')[1].split("</section>")[0]
    assert f'<span class="count">{len(recent["variants"])}</span>' in variants
    assert variants.count('<li class="variant">') == min(len(recent["variants"]), 15)
    handoffs = html.split('id="handoffs"')[1].split("</section>")[0]
    assert handoffs.count('<td class="handoff">') == len(recent["handoffs"])
    section = html.split('id="stuck"')[1].split("</section>")[0]
    assert f'<span class="count">{len(stuck)}</span>' in section
    for kind in ("map.svg", "model.bpmn", "events.xes"):
        assert re.search(rf'/api/processes/claims/{re.escape(kind)}\?window=4w["&]', html), kind
    assert "map.svg?window=4w&amp;view=performance&amp;activities=0.5&amp;paths=0.3" in html
    assert ('href="/processes/claims?view=performance&amp;activities=0.5&amp;paths=0.3'
            '&amp;window=quarter"') in html


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
    """Acknowledge one alert (naming the fix's owner and action) and silence another: both
    recorded as alice, shown on /alerts in their sections, notes escaped; a note added through
    its form is recorded and shown as text."""
    base, settings = site
    ack_key, silence_key = "no_owner/claims/owner", "stale_review/hostile/review"
    until = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()
    with signed_in(base) as client:
        token = csrf_of(client.get("/alerts").text)
        r = client.post(f"/alerts/{ack_key}/ack", data={
            "csrf_token": token, "note": "<img src=x onerror=alert(9)>", "owner": "clm-ops",
            "action": "<i>second</i> assessor"})
        assert (r.status_code, r.headers["location"]) == (303, "/alerts?done=acknowledged")
        r = client.post(f"/alerts/{ack_key}/note", data={"csrf_token": token,
                                                         "text": "<u>hired</u> one"})
        assert (r.status_code, r.headers["location"]) == (303, "/alerts?done=noted")
        assert client.post(f"/alerts/{ack_key}/note", data={"csrf_token": token, "text": " "}
                           ).status_code == 400
        r = client.post(f"/alerts/{silence_key}/silence", data={
            "csrf_token": token, "until": until, "why": "<b>bold</b> migration", "back": "//evil"})
        assert (r.status_code, r.headers["location"]) == (303, "/alerts?done=silenced")
        html = client.get("/alerts").text
    acknowledged = html.split('id="acknowledged"')[1].split('id="silenced"')[0]
    silenced = html.split('id="silenced"')[1].split('id="resolved"')[0]
    assert ack_key in acknowledged and "Acknowledged by <strong>alice</strong>" in acknowledged
    assert ('Fix owned by <strong class="fix-owner">clm-ops</strong>: <span class="fix-action">'
            "&lt;i&gt;second&lt;/i&gt; assessor</span>") in acknowledged
    assert "alice: &lt;u&gt;hired&lt;/u&gt; one" in acknowledged
    assert silence_key in silenced and "&lt;b&gt;bold&lt;/b&gt; migration" in silenced
    assert_escaped(html)
    state = open_alert_state(settings.store.url)
    try:
        assert state.acknowledgements()[ack_key].by == "alice"
        assert [n.text for n in state.notes(ack_key)] == ["<u>hired</u> one"]
        assert any(s.key == silence_key and s.by == "alice" for s in state.silences())
    finally:
        state.close()


def test_alert_whose_key_holds_html_is_acknowledged_through_its_form(
        site: tuple[str, Settings]) -> None:
    """A stuck alert of the hostile process (its key holds a step that is HTML) has its form
    action percent-encoded; posting it records the acknowledgement under the exact key."""
    base, settings = site
    key = "stuck/hostile/stuck at <svg onload=alert(2)>"
    action = "/alerts/stuck%2Fhostile%2Fstuck%20at%20%3Csvg%20onload%3Dalert%282%29%3E/ack"
    with signed_in(base) as client:
        html = client.get(f"/processes/{HOSTILE_PROCESS}").text
        assert f'action="{action}"' in html
        r = client.post(action, data={"csrf_token": csrf_of(html), "note": "seen",
                                      "back": f"/processes/{HOSTILE_PROCESS}#alerts"})
        assert r.status_code == 303, r.text
        after = client.get(r.headers["location"]).text
    assert "Acknowledged by <strong>alice</strong>" in after
    assert_escaped(after)
    state = open_alert_state(settings.store.url)
    try:
        assert state.acknowledgements()[key].by == "alice"
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
