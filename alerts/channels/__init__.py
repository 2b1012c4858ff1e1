"""Chat and event channels: their settings and the payload builder for each channel type.

Each builder (``slack``, ``teams``, ``mattermost``, ``googlechat``, ``webhook``,
``cloudevent``) is a pure function from a ``Notification`` to the platform's JSON body. A
channel's URL and header values are secrets (they usually carry a token): they are held as
``SecretStr``, never echoed in a validation message, a log line or an error.

Part of alerts: it says what a message looks like, not when to send it (the lifecycle and
routing) nor how (``alerts.delivery``). Of the project it uses the alert contract in ``schemas``;
like all of alerts it must never import ingest or the ``backlight`` shell.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alerts.channels import cloudevent, googlechat, mattermost, slack, teams, webhook
from alerts.channels.text import encode
from schemas.alerts import Notification

ChannelType = Literal["slack", "teams", "mattermost", "googlechat", "webhook", "kafka"]
CHANNEL_TYPES: tuple[str, ...] = get_args(ChannelType)
Builder = Callable[[Notification], dict[str, Any]]
BUILDERS: Mapping[str, Builder] = {
    "slack": slack.build, "teams": teams.build, "mattermost": mattermost.build,
    "googlechat": googlechat.build, "webhook": webhook.build, "kafka": cloudevent.build,
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")


class ChannelSettings(BaseModel):
    """One ``[[alerts.channels]]`` entry: where notifications go and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ChannelType
    name: str
    """Unique; routes name channels by it, logs name it (never the URL)."""
    url: SecretStr | None = None
    """The webhook URL (http or https), usually from the environment: ``"${SLACK_WEBHOOK}"``."""
    topic: str = "backlight.alerts"
    """Kafka channels: the topic the CloudEvents go to (the broker is the ``[kafka]`` one)."""
    timeout_s: float = Field(10.0, gt=0, le=120)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra HTTP headers, e.g. ``Authorization = "Bearer ${TOKEN}"`` for a generic webhook."""

    @model_validator(mode="before")
    @classmethod
    def _wrap_secrets(cls, data: Any) -> Any:
        """Wrap the URL and header values first, so no validation error can quote them."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("url"), str):
            data["url"] = SecretStr(data["url"])
        if isinstance(data.get("headers"), dict):
            data["headers"] = {k: SecretStr(v) if isinstance(v, str) else v
                               for k, v in data["headers"].items()}
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: object) -> object:
        if value not in CHANNEL_TYPES:
            raise ValueError(f"unknown channel type {value!r}: use one of {', '.join(CHANNEL_TYPES)}")
        return value

    @field_validator("name")
    @classmethod
    def _good_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a channel name is 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("topic")
    @classmethod
    def _good_topic(cls, value: str) -> str:
        if not _TOPIC.match(value):
            raise ValueError("a Kafka topic is 1-249 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value.get_secret_value())
        except ValueError:
            raise ValueError("not a valid URL (the value is secret and not shown)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host "
                             "(the value is secret and not shown)")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            if not _HEADER.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if any(c in secret.get_secret_value() for c in "\r\n"):
                raise ValueError(f"header {name!r}: the value contains a line break (not shown)")
        return value

    @model_validator(mode="after")
    def _url_for_http(self) -> ChannelSettings:
        if self.type == "kafka":
            if self.url is not None:
                raise ValueError("a kafka channel takes no url: it publishes to the [kafka] "
                                 "brokers, on `topic`")
        elif self.url is None:
            raise ValueError(f"url: required for a {self.type} channel")
        return self


def build_payload(notification: Notification, channel_type: str) -> dict[str, Any]:
    """The body a channel of this type is sent for a notification."""
    try:
        builder = BUILDERS[channel_type]
    except KeyError:
        raise ValueError(f"unknown channel type {channel_type!r}") from None
    return builder(notification)


def payload_for(channels: Mapping[str, ChannelSettings]) -> Callable[[Notification], bytes]:
    """``Outbox.enqueue``'s payload function for these channels (by ``Notification.channel``):
    the exact bytes each notification will be sent as (``text.encode``)."""
    def build(notification: Notification) -> bytes:
        return encode(build_payload(notification, channels[notification.channel].type))
    return build


def by_name(channels: tuple[ChannelSettings, ...] | list[ChannelSettings]) -> dict[str, ChannelSettings]:
    """Channels keyed by name; ValueError naming a duplicate."""
    out: dict[str, ChannelSettings] = {}
    for channel in channels:
        if channel.name in out:
            raise ValueError(f"channel {channel.name!r} is configured twice")
        out[channel.name] = channel
    return out
