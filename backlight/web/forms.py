"""Helpers of the pages: safe redirect targets, form values, and event data shaped for display.

Nothing here marks text safe: values stay plain strings and the templates escape them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from mining.render import humanize_seconds
from schemas.errors import BacklightError

NOTE_MAX = 2000
DONE_MESSAGES = {
    "reviewed": "Review recorded.",
    "acknowledged": "Alert acknowledged.",
    "noted": "Note added.",
    "silenced": "Alert silenced.",
    "accepted": "Accepted as normal: the alert resolves at the next evaluation.",
    "signed-in": "Signed in.",
    "signed-out": "Signed out.",
}
"""The only texts a redirect's ``?done=`` can show (never the query's own text)."""


class FormError(BacklightError):
    """A form value the page cannot use (shown on a 400 page)."""


def q(value: object) -> str:
    """A URL path segment from any text (event data included): everything reserved escaped."""
    return quote(str(value), safe="")


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site ("/..." but not "//..." or "/\\..."), else
    ``default``: a sign-in or action never redirects elsewhere."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(c in target for c in "\r\n\t\\") or urlsplit(target).netloc:
        return default
    return target


def with_query(path: str, **params: str) -> str:
    """``path`` with ``params`` set in its query string (replacing values already there)."""
    parts = urlsplit(path)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query += [(k, v) for k, v in params.items() if v]
    return urlunsplit(("", "", parts.path, urlencode(query), parts.fragment))


def note(value: object, name: str = "note", required: bool = False) -> str:
    """A free-text field, trimmed; too long or (when ``required``) empty is refused."""
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > NOTE_MAX:
        raise FormError(f"{name}: at most {NOTE_MAX} characters")
    if required and not text:
        raise FormError(f"{name}: say why")
    return text


def parse_until(value: object, now: datetime | None = None) -> datetime:
    """The end of a silence from a form: a date (the silence ends as that day begins, UTC)
    or a date and time (UTC unless it carries an offset); it must lie in the future."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        until = (datetime.combine(date.fromisoformat(text), time(), UTC) if len(text) == 10
                 else datetime.fromisoformat(text))
    except ValueError:
        raise FormError(f"until: {text[:40]!r} is not a date (YYYY-MM-DD)") from None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if until <= (now or datetime.now(UTC)):
        raise FormError("until: must be in the future")
    return until


def default_until(today: date | None = None) -> str:
    """The date a silence form proposes: a week from today."""
    return ((today or datetime.now(UTC).date()) + timedelta(days=7)).isoformat()


def duration(seconds: float | None) -> str:
    return "—" if seconds is None else humanize_seconds(float(seconds))


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.0f}%"


def when(moment: datetime | date | str | None) -> str:
    """A moment for people: '2026-01-06 11:50 UTC', a date as it is."""
    if moment is None:
        return "—"
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            return moment
        moment = parsed
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return moment.isoformat()


@dataclass(frozen=True)
class Field:
    """One line of an alert's evidence: a scalar, a list of scalars, or a table of records."""

    label: str
    text: str = ""
    items: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        return "table" if self.columns else "list" if self.items else "text"


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def evidence_fields(evidence: Mapping[str, Any]) -> list[Field]:
    """An alert's evidence as labelled fields (nested values flattened to text, records to a
    table), every value still plain text for the template to escape."""
    out = []
    for key, value in evidence.items():
        label = str(key).replace("_", " ")
        if isinstance(value, Mapping):
            out.append(Field(label, items=tuple(f"{k}: {_scalar(v)}" for k, v in value.items())))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if value and all(isinstance(v, Mapping) for v in value):
                columns = tuple(dict.fromkeys(str(k) for v in value for k in v))
                rows = tuple(tuple(_scalar(v.get(c)) for c in columns) for v in value)
                out.append(Field(label, columns=tuple(c.replace("_", " ") for c in columns),
                                 rows=rows))
            elif value:
                out.append(Field(label, items=tuple(_scalar(v) for v in value)))
            else:
                out.append(Field(label, text="none"))
        else:
            out.append(Field(label, text=_scalar(value)))
    return out
