"""Who may read and write, over real HTTP: writes refused (and changing nothing) without the
right credentials, authentication before any lookup, CSRF for cookie and proxy users, the
security headers, and no secret in any response or log line."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from web_support import (
    HOSTILE_PROCESS,
    READER_TOKEN,
    WRITER_TOKEN,
    evaluate_alerts,
    fill_store,
    web_settings,
)

from backlight.config import Settings
from backlight.web.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, Authenticator
from backlight.web.server import running
from storage import open_alert_state

SECRET = "session-signing-secret-0123456789abcdef"
STUCK_KEY = "stuck/claims/stuck at Assessment"
UNTIL = (datetime.now(UTC) + timedelta(days=2)).isoformat()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web-security") / "store.db"
    nows = fill_store(path, cases=200)
    evaluate_alerts(web_settings(path), nows)
    return path


def jar(http: httpx.Client, cookies: dict[str, str]) -> httpx.Client:
    """The client holding exactly these cookies (a browser's jar)."""
    http.cookies.clear()
    for name, value in cookies.items():
        http.cookies.set(name, value)
    return http


@contextmanager
def served(settings: Settings) -> Iterator[httpx.Client]:
    with running(settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def open_server(store: Path) -> Iterator[httpx.Client]:
    with served(web_settings(store, secret=SECRET)) as http:
        yield http


@pytest.fixture
def open_client(open_server: httpx.Client) -> httpx.Client:
    """The open server's client, with an empty cookie jar."""
    return jar(open_server, {})


def writes(key: str = STUCK_KEY, process: str = "claims") -> list[tuple[str, dict[str, Any]]]:
    """Every write the app offers (API JSON and page forms), with a valid body."""
    k = quote(key, safe="/")
    silence = {"until": UNTIL, "why": "maintenance"}
    return [
        (f"/api/processes/{process}/review", {"json": {"note": "x"}}),
        (f"/api/alerts/{k}/ack", {"json": {"note": "x"}}),
        (f"/api/alerts/{k}/silence", {"json": silence}),
        (f"/processes/{process}/review", {"data": {"note": "x"}}),
        (f"/alerts/{k}/ack", {"data": {"note": "x"}}),
        (f"/alerts/{k}/silence", {"data": silence}),
    ]


def recorded(store: Path) -> tuple[object, ...]:
    """Everything a write could change: alerts, their history, acks, silences, reviews."""
    state = open_alert_state(f"sqlite:///{store}")
    try:
        return (state.alerts(), state.history(limit=10_000), state.acknowledgements(),
                state.silences(), state.reviews())
    finally:
        state.close()


def test_every_write_is_refused_without_the_right_credentials(
        open_client: httpx.Client, store: Path) -> None:
    """No credentials or a wrong token: 401 with WWW-Authenticate; the reader: 403; no change."""
    before = recorded(store)
    refusals = {
        "none": ({}, 401),
        "wrong": ({"Authorization": "Bearer not-a-token-at-all"}, 401),
        "basic": ({"Authorization": f"Basic {WRITER_TOKEN}"}, 401),
        "reader": ({"Authorization": f"Bearer {READER_TOKEN}"}, 403),
    }
    for who, (headers, status) in refusals.items():
        for path, body in writes():
            response = open_client.post(path, headers=headers, **body)
            assert response.status_code == status, (who, path, response.text)
            if status == 401:
                assert response.headers["www-authenticate"] == "Bearer"
    assert recorded(store) == before


def test_authentication_comes_before_lookup(open_client: httpx.Client, store: Path) -> None:
    """Writes to an unknown process or alert key: 401 without credentials, 403 read-only."""
    before = recorded(store)
    for path, body in writes(key="no/such/alert", process="no-such-process"):
        assert open_client.post(path, **body).status_code == 401, path
        reader = {"Authorization": f"Bearer {READER_TOKEN}"}
        assert open_client.post(path, headers=reader, **body).status_code == 403, path
    assert recorded(store) == before


def test_reading_with_tokens_required(store: Path) -> None:
    """read = "token": API reads 401 and pages redirect to /login without a token; /healthz
    stays open; the reader's token reads."""
    with served(web_settings(store, read="token")) as http:
        documented = http.get("/openapi.json").json()["paths"]
        api = [p.replace("{name}", "claims").replace("{key}", STUCK_KEY)
               for p, ops in documented.items() if p.startswith("/api/") and "get" in ops]
        assert len(api) >= 8
        for path in [*api, "/api/processes/no-such-process", "/api/nothing-here"]:
            response = http.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        for path in ("/", "/processes/claims", "/alerts"):
            response = http.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login")
        assert http.get("/healthz").status_code == 200
        reader = {"Authorization": f"Bearer {READER_TOKEN}"}
        assert http.get("/api/processes", headers=reader).status_code == 200
        assert http.get("/api/processes/claims/stuck", headers=reader).status_code == 200


def test_session_cookie_writes_need_the_csrf_header(open_client: httpx.Client,
                                                    store: Path) -> None:
    """A signed-in browser's API write without X-CSRF-Token is 403; with its token, 201."""
    settings = web_settings(store, secret=SECRET)
    auth = Authenticator(settings.web)
    session = {SESSION_COOKIE: auth.session_cookie("alice")}
    nonce = Authenticator.new_nonce()
    before = recorded(store)
    path = "/api/processes/payments/review"
    assert jar(open_client, session).post(path, json={}).status_code == 403
    wrong = {CSRF_HEADER: auth.csrf_token(Authenticator.new_nonce())}
    browser = jar(open_client, {**session, CSRF_COOKIE: nonce})
    assert browser.post(path, headers=wrong, json={}).status_code == 403
    forged = {SESSION_COOKIE: Authenticator(web_settings(store).web).session_cookie("alice")}
    assert jar(open_client, {**forged, CSRF_COOKIE: nonce}).post(
        path, headers={CSRF_HEADER: auth.csrf_token(nonce)}, json={}).status_code == 401
    assert recorded(store) == before
    response = jar(open_client, {**session, CSRF_COOKIE: nonce}).post(
        path, headers={CSRF_HEADER: auth.csrf_token(nonce)}, json={"note": "via the browser"})
    jar(open_client, {})
    assert response.status_code == 201
    assert response.json()["by"] == "alice"


def test_form_post_without_its_csrf_token_is_refused(open_client: httpx.Client,
                                                     store: Path) -> None:
    """A signed-in browser's form post without the page's CSRF token changes nothing."""
    auth = Authenticator(web_settings(store, secret=SECRET).web)
    cookies = {SESSION_COOKIE: auth.session_cookie("alice"), CSRF_COOKIE: auth.new_nonce()}
    before = recorded(store)
    for path, body in writes()[3:]:
        response = jar(open_client, cookies).post(path, follow_redirects=False, **body)
        assert response.status_code == 403, (path, response.status_code)
    jar(open_client, {})
    assert recorded(store) == before


def test_trusted_proxy_header(store: Path) -> None:
    """The proxy's user header counts only when configured and only from a trusted proxy."""
    nonce = Authenticator.new_nonce()
    path = "/api/processes/onboarding/review"

    def post(settings: Settings, http: httpx.Client, csrf: bool = True) -> httpx.Response:
        token = Authenticator(settings.web).csrf_token(nonce)
        return jar(http, {CSRF_COOKIE: nonce}).post(path, json={},
                         headers={"X-Forwarded-User": "pat", **({CSRF_HEADER: token} if csrf
                                                                else {})})

    off = web_settings(store, secret=SECRET)
    with served(off) as http:
        assert post(off, http).status_code == 401
    on = web_settings(store, secret=SECRET, trusted_header="X-Forwarded-User")
    with served(on) as http:
        assert post(on, http, csrf=False).status_code == 403
        response = post(on, http)
        assert response.status_code == 201
        assert response.json()["by"] == "pat"
    elsewhere = web_settings(store, secret=SECRET, trusted_header="X-Forwarded-User",
                             trusted_proxies=("10.9.9.9",))
    with served(elsewhere) as http:
        assert post(elsewhere, http).status_code == 401


def test_security_headers_on_pages_and_api(open_client: httpx.Client) -> None:
    """Pages, API answers and refusals carry the CSP (no unsafe-inline), nosniff, DENY,
    no-referrer."""
    responses = [open_client.get(p) for p in ("/", "/processes/claims", "/alerts",
                                              "/api/processes", "/api/processes/claims/map.svg",
                                              "/api/processes/nope", "/openapi.json")]
    responses.append(open_client.post("/api/processes/claims/review", json={}))
    for response in responses:
        h = response.headers
        csp = h["content-security-policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp, response.url
        assert "frame-ancestors 'none'" in csp
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        if response.url.path.startswith("/api/"):
            assert h["cache-control"] == "no-store"


def test_tokens_configured_by_digest(store: Path) -> None:
    """A token given as its SHA-256 digest authenticates the token's value, not the digest."""
    digest = hashlib.sha256(b"digest-token-value-42").hexdigest()
    settings = web_settings(store, tokens=({"name": "dora", "sha256": digest, "write": True},))
    with served(settings) as http:
        ok = http.post("/api/processes/claims/review", json={"note": "digest"},
                       headers={"Authorization": "Bearer digest-token-value-42"})
        assert ok.status_code == 201 and ok.json()["by"] == "dora"
        wrong = http.post("/api/processes/claims/review", json={},
                          headers={"Authorization": f"Bearer {digest}"})
        assert wrong.status_code == 401


def test_no_secret_in_any_response_or_log(store: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Token values, their digests and the signing secret appear in no body, header or log."""
    caplog.set_level(logging.DEBUG)
    settings = web_settings(store, secret=SECRET)
    secrets = [WRITER_TOKEN, READER_TOKEN, SECRET, hashlib.sha256(WRITER_TOKEN.encode()).hexdigest(),
               hashlib.sha256(READER_TOKEN.encode()).hexdigest()]
    seen = []
    paths = ["/", "/alerts", "/login", "/processes/claims", f"/processes/{HOSTILE_PROCESS}",
             "/openapi.json", "/docs", "/healthz", "/readyz", "/api/processes", "/api/alerts",
             "/api/silences", "/api/processes/claims", "/api/processes/claims/stuck",
             f"/api/alerts/{STUCK_KEY}/history", "/api/processes/no-such"]
    with served(settings) as http:
        for auth in ({}, {"Authorization": f"Bearer {WRITER_TOKEN}"},
                     {"Authorization": f"Bearer {READER_TOKEN}"}):
            for path in paths:
                seen.append(http.get(path, headers=auth))
            seen.append(http.post("/api/processes/claims/review", headers=auth,
                                  json={"note": "scan"}))
            seen.append(http.post("/api/alerts/no/such/ack", headers=auth, json={}))
        seen.append(http.post("/login", data={"token": WRITER_TOKEN, "next": "/"}))
        seen.append(http.post("/login", data={"token": "wrong", "next": "/"}))
    assert any(r.status_code == 200 and r.url.path == "/api/processes" for r in seen)
    for response in seen:
        text = response.text + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        for secret in secrets:
            assert secret not in text, (response.url, secret[:6])
    for secret in secrets:
        assert secret not in caplog.text
