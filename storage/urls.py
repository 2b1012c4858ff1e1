"""Store URLs: which database a URL names, and the URL and driver messages as they may be shown
(never with the password)."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from storage.errors import StoreError

_PASSWORD_PARAM = re.compile(r"(?i)(password=)[^&;\s]*")


def mask_url(url: str) -> str:
    """The URL as it may be shown: its password, if any, replaced by ``***``
    (``postgresql://user:***@host/db``), also a ``password=`` query parameter."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _PASSWORD_PARAM.sub(r"\1***", url)
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    tail = _PASSWORD_PARAM.sub(r"\1***", tail)
    return f"{scheme}://{netloc}{slash}{tail}"


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message) on one line, without the URL's password in any form."""
    text = " ".join(text.split())
    password = _password(url)
    for secret in {password, unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return _PASSWORD_PARAM.sub(r"\1***", text)


def _password(url: str) -> str:
    netloc = url.partition("://")[2].partition("/")[0]
    userinfo, at, _ = netloc.rpartition("@")
    return userinfo.partition(":")[2] if at else ""


def parse_url(url: str) -> tuple[str, str]:
    """("sqlite", path) or ("postgresql", url), or a StoreError naming the problem."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise StoreError(f"store url {mask_url(url)!r} names no file: "
                             "use sqlite:///path/to/file.db")
        return "sqlite", path
    if scheme in ("postgresql", "postgres"):
        return "postgresql", url
    raise StoreError(f"store url {mask_url(url)!r}: unknown scheme {scheme!r} "
                     "(use sqlite:///file.db or postgresql://user:password@host/db)")
