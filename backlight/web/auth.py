"""Who is asking, and may they: bearer tokens, a signed session cookie, a trusted proxy header,
and the CSRF tokens of the forms.

- ``Authorization: Bearer <token>``: the token's SHA-256 is compared, in constant time, with
  every configured token's (``[[web.tokens]]``, given as a digest or as the value itself).
- A browser signs in once on ``/login`` with its token and gets ``backlight_session``: the
  token's name, an expiry and an HMAC of both (HttpOnly, SameSite=Strict). Removing the token
  from the config ends its sessions.
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


class Authenticator:
    """Resolves the principal of a request and signs sessions and CSRF tokens."""

    def __init__(self, web: WebSettings) -> None:
        self.web = web
        self._key = (web.secret.get_secret_value().encode() if web.secret
                     else secrets.token_bytes(32))
        self._tokens: list[tuple[bytes, TokenSettings]] = []
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
        session = conn.cookies.get(SESSION_COOKIE)
        if session:
            name = self._verify_session(session)
            token = next((t for _, t in self._tokens if t.name == name), None)
            if token is not None:
                return Principal(token.name, token.write, "session")
        return None

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def session_cookie(self, token_name: str, now: float | None = None) -> str:
        expiry = int((now or time.time()) + SESSION_TTL_S)
        name = base64.urlsafe_b64encode(token_name.encode()).decode().rstrip("=")
        payload = f"{name}.{expiry}"
        return f"{payload}.{self._sign('session|' + payload)}"

    def _verify_session(self, cookie: str, now: float | None = None) -> str | None:
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        payload = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign("session|" + payload), parts[2]):
            return None
        if int(parts[1]) < (now or time.time()):
            return None
        try:
            return base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None

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
