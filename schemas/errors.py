"""The root of Backlight's errors and the one raised for a message that is not a valid event."""

from __future__ import annotations


class BacklightError(Exception):
    """Base of all Backlight errors."""


class InvalidEvent(BacklightError):
    """A message could not be decoded, mapped or validated as a case event.

    ``code`` is a stable, short reason (e.g. ``missing_field``) for metrics and dead-letter
    headers; the message says what exactly was wrong, for a person.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
