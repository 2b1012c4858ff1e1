"""The web's edges over real HTTP: cookies Secure behind a TLS-terminating trusted proxy, sessions
that die with their token's value and on logout, /login limited per client, and map.svg
renders few (quantised, cached) and bounded in concurrency (real Graphviz processes counted)."""

from __future__ import annotations

import logging
import os
import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from web_support import READER_TOKEN, WRITER_TOKEN, fill_store, web_settings

from backlight.config import Settings
from backlight.web.auth import CSRF_COOKIE, SESSION_COOKIE
from backlight.web.server import running
from schemas.event import CaseEvent, to_time_us
from storage import SQLiteStore

SECRET = "session-signing-secret-0123456789abcdef"
NEW_WRITER_TOKEN = "writer-token-rotated-987654"
WIDE, TANGLE = "wide", "tangle"
"""A process of 12 activities and random paths between them: dot takes a second or so to lay
out its performance map (at 30 activities, 40 s)."""


def wide_events(cases: int = 400, activities: int = 12, seed: int = 3,
                process: str = WIDE) -> list[CaseEvent]:
    """``cases`` random walks over ``activities`` steps (a tangle at 30: 40 s of layout)."""
    rng = random.Random(seed)
    t0 = to_time_us(datetime.fromisoformat("2026-03-02T09:00:00+00:00"))
    out = []
    for c in range(cases):
        for i in range(rng.randint(4, 12)):
            out.append(CaseEvent(f"{process}-{c}-{i}", process, f"case-{c}",
                                 f"step {rng.randrange(activities):02d}",
                                 t0 + (c * 3600 + i * 600) * 1_000_000))
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web-edges") / "store.db"
    fill_store(path, cases=150)
    wide = SQLiteStore(path)
    try:
        wide.write(wide_events())
        wide.write(wide_events(activities=30, process=TANGLE))
    finally:
        wide.close()
    return path


@contextmanager
def served(settings: Settings) -> Iterator[httpx.Client]:
    with running(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """The response's Set-Cookie headers by cookie name (the whole header line)."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def sign_in(http: httpx.Client, token: str = WRITER_TOKEN,
            headers: dict[str, str] | None = None) -> httpx.Response:
    """GET the form, POST it with ``token`` (cookies passed by hand: Secure ones too)."""
    http.cookies.clear()
    form = http.get("/login", headers=headers)
    nonce = form.cookies[CSRF_COOKIE]
    http.cookies.clear()
    return http.post("/login", headers={**(headers or {}), "Cookie": f"{CSRF_COOKIE}={nonce}"},
                     data={"csrf_token": csrf_of(form.text), "token": token, "next": "/"})


def session_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    return response.cookies[SESSION_COOKIE]


def reads_with(http: httpx.Client, session: str) -> int:
    """The status of an API read carrying only this session cookie (reading needs a token)."""
    http.cookies.clear()
    return http.get("/api/silences", headers={"Cookie": f"{SESSION_COOKIE}={session}"}).status_code


# --- cookies behind a TLS-terminating proxy --------------------------------------------------

def test_cookies_are_secure_when_a_trusted_proxy_says_https(store: Path) -> None:
    """From a trusted proxy with X-Forwarded-Proto: https the CSRF and session cookies (and the
    logout's removal) are Secure; without the header they are not."""
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    with served(web_settings(store, secret=SECRET)) as http:  # trusts 127.0.0.1
        signed = sign_in(http, headers=https)
        cookies = set_cookies(signed)
        assert "; secure" in cookies[SESSION_COOKIE].lower()
        assert "httponly" in cookies[SESSION_COOKIE].lower()
        assert "; secure" in set_cookies(http.get("/login", headers=https))[CSRF_COOKIE].lower()
        page = http.get("/", headers={**https, "Cookie": f"{SESSION_COOKIE}={session_of(signed)}"})
        nonce = page.cookies[CSRF_COOKIE]
        out = http.post("/logout", data={"csrf_token": csrf_of(page.text)}, headers={
            **https, "Cookie": f"{SESSION_COOKIE}={session_of(signed)}; {CSRF_COOKIE}={nonce}"})
        assert out.status_code == 303
        assert "; secure" in set_cookies(out)[SESSION_COOKIE].lower()
        plain = sign_in(http)
        assert "; secure" not in set_cookies(plain)[SESSION_COOKIE].lower()
        assert "; secure" not in set_cookies(http.get("/login"))[CSRF_COOKIE].lower()
        http_proxy = sign_in(http, headers={"X-Forwarded-Proto": "http"})
        assert "; secure" not in set_cookies(http_proxy)[SESSION_COOKIE].lower()


def test_forwarded_proto_from_an_untrusted_address_is_ignored(store: Path) -> None:
    """X-Forwarded-Proto: https from an address not in trusted_proxies leaves cookies plain."""
    https = {"X-Forwarded-Proto": "https"}
    settings = web_settings(store, secret=SECRET, trusted_proxies=("10.9.9.9",))
    with served(settings) as http:
        assert "; secure" not in set_cookies(sign_in(http, headers=https))[SESSION_COOKIE].lower()
        assert "; secure" not in set_cookies(http.get("/login", headers=https))[CSRF_COOKIE].lower()


# --- sessions --------------------------------------------------------------------------------

def alice(token: str) -> dict[str, object]:
    return {"tokens": ({"name": "alice", "token": token, "write": True},
                       {"name": "rita", "token": READER_TOKEN, "write": False})}


def test_a_session_dies_when_its_tokens_value_changes(store: Path) -> None:
    """A session survives a restart with the same secret and token, but not a restart where
    the token of that name has a new value (its sessions are refused: 401), nor the token gone."""
    same = web_settings(store, read="token", secret=SECRET, **alice(WRITER_TOKEN))
    with served(same) as http:
        session = session_of(sign_in(http))
        assert reads_with(http, session) == 200
    with served(same) as http:
        assert reads_with(http, session) == 200  # a restart alone keeps it
    rotated = web_settings(store, read="token", secret=SECRET, **alice(NEW_WRITER_TOKEN))
    with served(rotated) as http:
        assert reads_with(http, session) == 401
        assert http.get("/", headers={"Cookie": f"{SESSION_COOKIE}={session}"}).status_code == 303
        assert reads_with(http, session_of(sign_in(http, NEW_WRITER_TOKEN))) == 200
    rita_only = web_settings(store, read="token", secret=SECRET,
                             tokens=({"name": "rita", "token": READER_TOKEN},))
    with served(rita_only) as http:
        assert reads_with(http, session) == 401


def test_logout_ends_the_session_on_the_server(store: Path) -> None:
    """After logout the same cookie, replayed, is refused (401, pages redirect to /login);
    another session of the same token goes on."""
    settings = web_settings(store, read="token", secret=SECRET)
    with served(settings) as http:
        session = session_of(sign_in(http))
        other = session_of(sign_in(http))
        assert reads_with(http, session) == 200
        http.cookies.clear()
        page = http.get("/alerts", headers={"Cookie": f"{SESSION_COOKIE}={session}"})
        assert page.status_code == 200 and "signed in as <strong>alice</strong>" in page.text
        nonce = page.cookies[CSRF_COOKIE]
        http.cookies.clear()
        out = http.post("/logout", data={"csrf_token": csrf_of(page.text)},
                        headers={"Cookie": f"{SESSION_COOKIE}={session}; {CSRF_COOKIE}={nonce}"})
        assert out.status_code == 303
        assert reads_with(http, session) == 401
        http.cookies.clear()
        replay = http.get("/alerts", headers={"Cookie": f"{SESSION_COOKIE}={session}"})
        assert replay.status_code == 303 and replay.headers["location"].startswith("/login")
        http.cookies.clear()
        write = http.post("/api/processes/claims/review", json={"note": "replayed"}, headers={
            "Cookie": f"{SESSION_COOKIE}={session}; {CSRF_COOKIE}={nonce}",
            "X-CSRF-Token": csrf_of(page.text)})
        assert write.status_code == 401
        assert reads_with(http, other) == 200


# --- /login limited per client ---------------------------------------------------------------

def test_login_beyond_the_limit_gets_429_and_other_clients_do_not(
        store: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Ten failed sign-ins from one client (X-Forwarded-For via the trusted proxy): the next
    attempt, right token or not, is 429 with Retry-After; another client signs in. Failures are
    logged with the client's address and never the token tried (in Backlight's events nor in
    the libraries' warnings)."""
    caplog.set_level(logging.WARNING)
    guessed = "guessed-token-value-0000"
    first, second = {"X-Forwarded-For": "203.0.113.5"}, {"X-Forwarded-For": "203.0.113.6"}
    with served(web_settings(store, secret=SECRET)) as http, \
            structlog.testing.capture_logs() as logged:
        for _ in range(10):
            assert sign_in(http, guessed, first).status_code == 401
        limited = sign_in(http, WRITER_TOKEN, first)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert SESSION_COOKIE not in set_cookies(limited)
        assert sign_in(http, guessed, second).status_code == 401
        assert session_of(sign_in(http, WRITER_TOKEN, second))
        assert sign_in(http, WRITER_TOKEN, first).status_code == 429
    failures = [e["event"] for e in logged if "sign-in failed" in e["event"]]
    assert len(failures) == 11
    assert "'203.0.113.5'" in failures[0] and "(10 within a minute)" in failures[9]
    assert any("sign-in refused from '203.0.113.5'" in e["event"] for e in logged)
    assert guessed not in str(logged) + caplog.text
    assert WRITER_TOKEN not in str(logged) + caplog.text


def test_parallel_sign_ins_cannot_slip_past_the_limit(store: Path) -> None:
    """30 wrong sign-ins from one client at once: exactly 10 are answered 401, the rest 429."""
    with served(web_settings(store, secret=SECRET)) as http:
        form = http.get("/login")
        nonce, csrf = form.cookies[CSRF_COOKIE], csrf_of(form.text)
        base = str(http.base_url)
        start = threading.Barrier(30)
        codes: list[int] = []

        def guess(i: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                start.wait(60)
                codes.append(client.post("/login", data={
                    "csrf_token": csrf, "token": f"guess-{i:04d}-0123456789", "next": "/"},
                    headers={"Cookie": f"{CSRF_COOKIE}={nonce}",
                             "X-Forwarded-For": "203.0.113.77"}).status_code)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sorted(codes) == [401] * 10 + [429] * 20


def test_forwarded_for_from_an_untrusted_address_does_not_escape_the_limit(store: Path) -> None:
    """Not behind a trusted proxy, X-Forwarded-For is ignored: a client cannot name itself
    another address to get ten more attempts."""
    with served(web_settings(store, secret=SECRET, trusted_proxies=("10.9.9.9",))) as http:
        for i in range(10):
            assert sign_in(http, "guess-" + "x" * 20, {"X-Forwarded-For": f"192.0.2.{i}"}
                           ).status_code == 401
        spoofed = sign_in(http, WRITER_TOKEN, {"X-Forwarded-For": "192.0.2.200"})
        assert spoofed.status_code == 429 and spoofed.headers["retry-after"]


# --- map.svg bounded ---------------------------------------------------------------------------

def map_counters(http: httpx.Client) -> tuple[float, float]:
    """backlight_map_renders_total and backlight_map_busy_total from /metrics."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            found[sample.name] = sample.value
    return found["backlight_map_renders_total"], found["backlight_map_busy_total"]


def test_fifty_distinct_map_urls_cost_a_handful_of_renders(store: Path) -> None:
    """50 map.svg requests with distinct thresholds near 0.53/0.32 draw at most 4 maps (5% steps,
    cached), each answer the map of its snapped thresholds; the counter is on /metrics."""
    with served(web_settings(store)) as http:
        url = "/api/processes/onboarding/map.svg"
        before, _ = map_counters(http)
        bodies = set()
        for i in range(50):
            r = http.get(url, params={"activities": f"{0.51 + i * 0.00099:.5f}",
                                      "paths": f"{0.31 + i * 0.0007:.5f}"})
            assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
            bodies.add(r.text)
        renders, _ = map_counters(http)
        assert 1 <= renders - before <= 4
        assert len(bodies) <= 4
        snapped = http.get(url, params={"activities": "0.5", "paths": "0.3"}).text
        assert snapped in bodies
        assert map_counters(http)[0] == renders  # already drawn: from the cache


def dot_children() -> int:
    """Graphviz processes this test process (which runs the server) has running now."""
    count = 0
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = stat[stat.rindex(")") + 2:].split()[1]
        count += name == "dot" and ppid == me
    return count


def burst(http: httpx.Client, requests: int) -> tuple[list[httpx.Response], int]:
    """``requests`` map.svg requests of distinct snapped thresholds at once; the responses and
    the most Graphviz processes seen running at the same time meanwhile."""
    base = str(http.base_url)
    start = threading.Barrier(requests + 1)
    done = threading.Event()
    peak = [0]
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], dot_children())

    def fetch(i: int) -> None:
        with httpx.Client(base_url=base, timeout=120) as client:
            start.wait(60)
            r = client.get(f"/api/processes/{WIDE}/map.svg",
                           params={"activities": "1", "paths": f"{0.3 + 0.05 * i:.2f}",
                                   "view": "performance"})
        with lock:
            responses.append(r)

    watcher = threading.Thread(target=watch)
    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(requests)]
    watcher.start()
    for t in threads:
        t.start()
    start.wait(60)
    for t in threads:
        t.join(300)
    done.set()
    watcher.join(30)
    return responses, peak[0]


def test_concurrent_renders_wait_their_turn_never_more_dot_than_the_limit(store: Path) -> None:
    """Six distinct maps requested at once with one render slot and a long wait: all six
    are drawn, one after the other (never two Graphviz processes at once)."""
    with served(web_settings(store, map_renders=1, map_wait_s=120)) as http:
        assert http.get(f"/api/processes/{WIDE}").status_code == 200  # the snapshot, warm
        responses, peak = burst(http, 6)
        assert [r.status_code for r in responses] == [200] * 6
        assert peak <= 1
        assert map_counters(http) == (6, 0)


def test_renders_beyond_the_limit_get_503_with_retry_after(store: Path) -> None:
    """Eight distinct maps at once with one slot and no waiting: the ones that found it taken
    get 503 with Retry-After (counted on /metrics), the rest the map; at most one dot ran."""
    with served(web_settings(store, map_renders=1, map_wait_s=0)) as http:
        assert http.get(f"/api/processes/{WIDE}").status_code == 200
        responses, peak = burst(http, 8)
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
        for r in responses:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert "retry in a moment" in r.json()["detail"]
        assert peak <= 1
        assert map_counters(http) == (codes.count(200), codes.count(503))


def test_a_map_beyond_its_time_is_a_422_not_tried_again_until_new_events(store: Path) -> None:
    """A layout that exceeds web.map_timeout_s answers 422 naming the limit; asking again
    answers the same without another render, until the process gets new events."""
    url = f"/api/processes/{TANGLE}/map.svg"
    params = {"view": "performance", "activities": "1", "paths": "0.3"}
    with served(web_settings(store, map_timeout_s=0.5)) as http:
        first = http.get(url, params=params)
        assert first.status_code == 422
        assert "longer than 0.5 s" in first.json()["detail"]
        assert map_counters(http)[0] == 1
        for _ in range(5):
            assert http.get(url, params=params).status_code == 422
        assert map_counters(http)[0] == 1
        writer = SQLiteStore(store)
        try:
            writer.write([CaseEvent("tangle-new", TANGLE, "case-new", "step 00",
                                    to_time_us(datetime.fromisoformat("2026-06-01T09:00:00+00:00")))])
        finally:
            writer.close()
        threading.Event().wait(1.5)  # past the caches' once-a-second look at the store
        assert http.get(url, params=params).status_code == 422
        assert map_counters(http)[0] == 2
