"""Every error the alerts package raises, in one place."""

from __future__ import annotations

from schemas.errors import BacklightError


class AlertError(BacklightError):
    """Base of the alert errors."""


class AlertConfigError(AlertError, ValueError):
    """A rule threshold, duration, calendar, route or channel is not usable. A ValueError too,
    so the config model reports it against the key that holds the value."""


class DeliveryError(AlertError):
    """A notification could not be delivered (this attempt); the outbox retries it.
    Its message never contains the endpoint's URL or token."""


class AlertStateError(AlertError):
    """The alert state (alerts, silences, acknowledgements, reviews, outbox) cannot be read
    or written, or a person's action names something that does not exist."""


class LeaseLost(AlertStateError):
    """A worker wrote what it no longer holds: its evaluation lease or its outbox claim ran
    out and another worker took it over, so the write was refused (nothing changed)."""
