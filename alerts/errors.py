"""Every error the alerts package raises, in one place (the alert state's, ``AlertStateError``
and ``LeaseLost``, are the storage package's, re-exported here)."""

from __future__ import annotations

from schemas.errors import BacklightError
from storage.errors import AlertStateError, LeaseLost

__all__ = [
    "AlertConfigError", "AlertError", "AlertStateError", "DateRangeError", "DeliveryError", "LeaseLost",
]


class AlertError(BacklightError):
    """Base of the alert errors."""


class AlertConfigError(AlertError, ValueError):
    """A rule threshold, duration, calendar, route or channel is not usable. A ValueError too,
    so the config model reports it against the key that holds the value."""


class DateRangeError(AlertError):
    """A date a rule counts to falls outside the calendar's years 1 to 9999 (events dated near
    year 1, or a window of millions of days): the rule cannot judge that process."""


class DeliveryError(AlertError):
    """A notification could not be delivered (this attempt); the outbox retries it.
    Its message never contains the endpoint's URL or token."""
