"""Who is asking, and may they: bearer tokens, a signed session cookie, a trusted proxy header,
and the CSRF tokens of the forms.

- ``Authorization: Bearer <token>``: the token's SHA-256 is compared, in constant time, with
  every configured token's (``[[web.tokens]]``, given as a digest or as the value itself).
- A browser signs in once on ``/login`` with its token and gets ``backlight_session``: the
  token's name, an expiry, a random session id and an HMAC of these and of the token's current
  SHA-256 (HttpOnly, SameSite=Strict; Secure when the request came over HTTPS, directly or per
  ``X-Forwarded-Proto`` from a trusted proxy). Removing the token from the config or changing
  its value ends its sessions (the HMAC no longer holds); logging out revokes the session id in
  this process (kept until the session would have expired anyway), so a replayed cookie is
  refused.
- Behind a single sign-on proxy (oauth2-proxy and the like), ``web.trusted_header`` names the
  header carrying the user; it counts only from ``web.trusted_proxies``.
- Forms carry a CSRF token: an HMAC of a random per-browser nonce (cookie ``backlight_csrf``).
  Cookie- and proxy-authenticated writes need it, in the form or as ``X-CSRF-Token``;
  bearer-token writes do not (a browser never attaches that header on its own).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection

from backlight.config import TokenSettings, WebSettings

SESSION_COOKIE = "backlight_session"
CSRF_COOKIE = "backlight_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True)
class Principal:
    """An authenticated user: the token's name or the proxy's user."""

    name: str
    can_write: bool
    via: Literal["token", "session", "proxy"]

    @property
    def needs_csrf(self) -> bool:
        """True where the browser sends the credential by itself (cookie, proxy)."""
        return self.via != "token"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Session:
    """A verified session cookie: whose token, which session, until when."""

    name: str
    sid: str
    expiry: int


def peer(conn: HTTPConnection) -> str | None:
    """The address the connection comes from (the proxy's, behind one)."""
    return conn.client.host if conn.client else None


def from_trusted_proxy(conn: HTTPConnection, trusted: tuple[str, ...]) -> bool:
    return peer(conn) in trusted


def client_address(conn: HTTPConnection, trusted: tuple[str, ...]) -> str:
    """Who the client is: the connection's address, or behind a trusted proxy the nearest
    address in ``X-Forwarded-For`` that is not itself a trusted proxy (a client can put
    anything at the left end of that header; only the hops our proxies appended count)."""
    address = peer(conn) or "unknown"
    if address not in trusted:
        return address
    hops = [h.strip() for h in conn.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:100]
    return hops[0][:100] if hops else address


def is_https(conn: HTTPConnection, trusted: tuple[str, ...]) -> bool:
    """True when the browser talks HTTPS to us: directly, or to a trusted proxy that says so in
    ``X-Forwarded-Proto`` (from anyone else that header is ignored)."""
    if conn.url.scheme == "https":
        return True
    if not from_trusted_proxy(conn, trusted):
        return False
    proto = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return proto == "https"


class Authenticator:
    """Resolves the principal of a request and signs sessions and CSRF tokens."""

    def __init__(self, web: WebSettings) -> None:
        self.web = web
        self._key = (web.secret.get_secret_value().encode() if web.secret
                     else secrets.token_bytes(32))
        self._tokens: list[tuple[bytes, TokenSettings]] = []
        self._revoked: dict[str, int] = {}
        """Session ids logged out, with the expiry after which their cookie fails anyway."""
        self._revoked_lock = threading.Lock()
        for t in web.tokens:
            if t.sha256:
                self._tokens.append((bytes.fromhex(t.sha256), t))
            elif t.token is not None:
                self._tokens.append((digest(t.token.get_secret_value()), t))

    @property
    def read_open(self) -> bool:
        return self.web.read == "open"

    def from_token(self, token: str) -> TokenSettings | None:
        """The configured token with this value, compared in constant time with every one."""
        wanted = digest(token)
        found = None
        for known, settings in self._tokens:
            if hmac.compare_digest(known, wanted):
                found = settings
        return found

    def principal(self, conn: HTTPConnection) -> Principal | None:
        """Who sent the request, or None (anonymous or a credential that does not hold).
        A bearer header that does not match is never rescued by a cookie."""
        header = conn.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                return None
            token = self.from_token(value.strip())
            return None if token is None else Principal(token.name, token.write, "token")
        if self.web.trusted_header:
            user = conn.headers.get(self.web.trusted_header)
            host = conn.client.host if conn.client else None
            if user and user.strip() and host in self.web.trusted_proxies:
                return Principal(user.strip()[:200], self.web.trusted_header_write, "proxy")
        session = self.session(conn)
        if session is not None:
            token = self._by_name(session.name)
            if token is not None:
                return Principal(token.name, token.write, "session")
        return None

    def _by_name(self, name: str) -> TokenSettings | None:
        return next((t for _, t in self._tokens if t.name == name), None)

    def _digest_of(self, name: str) -> bytes | None:
        return next((d for d, t in self._tokens if t.name == name), None)

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def session_cookie(self, token_name: str, now: float | None = None) -> str:
        """A new session of the token named ``token_name`` (which must be configured): bound
        to the token's current value and to a fresh session id."""
        bound = self._digest_of(token_name)
        if bound is None:
            raise KeyError(f"no token named {token_name!r}")
        expiry = int((now or time.time()) + SESSION_TTL_S)
        name = base64.urlsafe_b64encode(token_name.encode()).decode().rstrip("=")
        payload = f"{name}.{expiry}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._sign('session|' + payload + '|' + bound.hex())}"

    def session(self, conn: HTTPConnection, now: float | None = None) -> Session | None:
        """The request's session, if its cookie holds: signed by us for the token's current
        value, not expired, not logged out."""
        cookie = conn.cookies.get(SESSION_COOKIE)
        return self.verify_session(cookie, now) if cookie else None

    def verify_session(self, cookie: str, now: float | None = None) -> Session | None:
        parts = cookie.split(".")
        if len(parts) != 4 or not parts[1].isdigit() or len(parts[1]) > 12:
            return None
        try:
            name = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        bound = self._digest_of(name)
        if bound is None:
            return None
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign("session|" + payload + "|" + bound.hex()),
                                   parts[3]):
            return None
        expiry = int(parts[1])
        if expiry < (now or time.time()):
            return None
        with self._revoked_lock:
            if parts[2] in self._revoked:
                return None
        return Session(name, parts[2], expiry)

    def revoke(self, session: Session, now: float | None = None) -> None:
        """Log ``session`` out: its cookie is refused from now on (in this process)."""
        moment = now or time.time()
        with self._revoked_lock:
            for sid in [s for s, until in self._revoked.items() if until < moment]:
                del self._revoked[sid]  # expired: the cookie fails on its expiry anyway
            self._revoked[session.sid] = session.expiry

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, nonce: str) -> str:
        """The token a form carries for the browser holding ``nonce`` in its CSRF cookie."""
        return self._sign("csrf|" + nonce)

    def csrf_ok(self, conn: HTTPConnection, submitted: str | None) -> bool:
        nonce = conn.cookies.get(CSRF_COOKIE)
        if not nonce or not submitted:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), submitted)
