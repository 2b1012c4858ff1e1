"""Delivery: the worker that sends the outbox, with retries, backoff and Retry-After.

Each round takes every channel's oldest due notification and posts it: a 2xx marks it sent
(never sent again); 429 waits for the receiver's ``Retry-After`` (seconds or an HTTP date);
5xx, 408, timeouts and connection errors back off exponentially with jitter (1 s, 2 s, 4 s ...
capped at 10 minutes) until ``give_up_after``; other statuses (4xx, a redirect) are the sender's
fault and the notification is dead after ``MAX_CLIENT_ERRORS`` attempts. A channel's later
notifications wait behind a failing one, so order per alert key holds. Every HTTP post carries
the notification id as ``Idempotency-Key``. Log lines and stored errors name the channel and
the notification, never the URL or a header value.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import structlog

from alerts.channels import ChannelSettings
from alerts.channels.cloudevent import CONTENT_TYPE
from alerts.channels.googlechat import REPLY_OPTION
from alerts.errors import AlertError, DeliveryError, LeaseLost
from storage import OutboxItem, OutboxQueue

log = structlog.stdlib.get_logger("backlight.alerts.delivery")

MAX_BACKOFF_S = 600.0
MAX_RETRY_AFTER_S = 3600.0
MAX_CLIENT_ERRORS = 3
USER_AGENT = "backlight-alerts"
PACE_S: Mapping[str, float] = {"slack": 1.0, "teams": 0.25, "googlechat": 1.0}
"""Least wall time between two posts to one channel, per type (the platforms' documented rates:
Slack about 1 message per second per webhook, Teams 4 per second, Google Chat 1 per second per
space), so a burst is paced instead of throttled."""


@dataclass(frozen=True)
class Response:
    """What a post came back with."""

    status: int
    retry_after_s: float | None = None


class Transport(Protocol):
    """Posts one body; raises DeliveryError (no URL in it) on a timeout or connection error."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout_s: float) -> Response:
        """Send ``body`` to ``url`` and say how the receiver answered."""
        ...

    def close(self) -> None:
        """Let its connections go."""
        ...


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _HideUrls(logging.Filter):
    """httpx logs each request's full URL at INFO; a webhook URL is a secret: drop the URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and str(record.msg).startswith("HTTP Request:"):
            record.args = tuple("(url hidden)" if isinstance(a, httpx.URL) else a
                                for a in record.args)
        return True


_URL_FILTER = _HideUrls()


class HttpxTransport:
    """HTTP posts with one ``httpx.Client`` (connection reuse, no redirects followed)."""

    def __init__(self) -> None:
        httpx_log = logging.getLogger("httpx")
        if _URL_FILTER not in httpx_log.filters:
            httpx_log.addFilter(_URL_FILTER)
        self._client = httpx.Client(follow_redirects=False, trust_env=False)

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout_s: float) -> Response:
        """POST the body and have the answer within ``timeout_s`` overall (httpx's timeouts
        bound each phase, not the whole: a receiver trickling its answer could hold a post for
        ever, and its claim would run out); a timeout or connection error is a DeliveryError
        naming its kind only. A post past the deadline is left to finish on its own thread."""
        outcome: list[Response | BaseException] = []

        def send() -> None:
            try:
                outcome.append(self._post(url, body, headers, timeout_s))
            except BaseException as exc:  # handed over to the caller below
                outcome.append(exc)

        poster = threading.Thread(target=send, name="backlight-post", daemon=True)
        poster.start()
        poster.join(timeout_s)
        if not outcome:
            raise DeliveryError(f"timed out after {timeout_s:g}s")  # as httpx's own timeouts
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _post(self, url: str, body: bytes, headers: Mapping[str, str],
              timeout_s: float) -> Response:
        try:
            reply = self._client.post(url, content=body, headers=dict(headers), timeout=timeout_s)
        except httpx.TimeoutException:
            raise DeliveryError(f"timed out after {timeout_s:g}s") from None
        except httpx.HTTPError as exc:  # the message may quote the URL: only its kind is kept
            raise DeliveryError(f"connection failed ({type(exc).__name__})") from None
        return Response(reply.status_code, retry_after(reply.headers.get("retry-after")))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


@dataclass
class DeliveryReport:
    """What one ``deliver`` call did, in total and per channel name."""

    sent: int = 0
    failed: int = 0
    dead: int = 0
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, channel: str, outcome: str) -> None:
        """Count one outcome (sent, failed, dead) for a channel."""
        setattr(self, outcome, getattr(self, outcome) + 1)
        counts = self.by_channel.setdefault(channel, {"sent": 0, "failed": 0, "dead": 0})
        counts[outcome] += 1


def backoff_s(attempts: int) -> float:
    """Wait after the n-th failed attempt: 1, 2, 4 ... s capped at 10 min, jittered to 50-100%."""
    base = min(MAX_BACKOFF_S, 2.0 ** max(0, attempts - 1))
    return base * random.uniform(0.5, 1.0)


def _target(channel: ChannelSettings) -> str:
    if channel.type == "kafka":
        return channel.topic
    assert channel.url is not None  # the settings require it for every HTTP channel
    url = channel.url.get_secret_value()
    if channel.type == "googlechat":  # threadKey replies need it on the URL
        parts = urlsplit(url)
        if "messageReplyOption" not in dict(parse_qsl(parts.query)):
            query = f"{parts.query}&" if parts.query else ""
            url = urlunsplit(parts._replace(query=f"{query}messageReplyOption={REPLY_OPTION}"))
    return url


def _headers(channel: ChannelSettings, item: OutboxItem) -> dict[str, str]:
    if channel.type == "kafka":
        return {"content-type": CONTENT_TYPE}
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
               "Idempotency-Key": item.id}
    headers.update({k: v.get_secret_value() for k, v in channel.headers.items()})
    return headers


def _item_log(item: OutboxItem) -> structlog.stdlib.BoundLogger:
    """The log bound to one notification's attempt: its channel, id and attempt number."""
    return log.bind(channel=item.channel, notification=item.id, attempt=item.attempts + 1)


def _attempt(outbox: OutboxQueue, item: OutboxItem, channel: ChannelSettings | None,
             transports: Mapping[str, Transport], now: datetime, give_up_after: timedelta | None,
             report: DeliveryReport) -> None:
    def fail(error: str, wait_s: float, permanent: bool) -> None:
        expired = give_up_after is not None and now - item.enqueued_at >= give_up_after
        dead = permanent or expired
        if not _fenced(item, lambda: outbox.mark_failed(
                item.id, error, now + timedelta(seconds=wait_s), dead=dead,
                claim_token=item.claim_token)):
            return
        report.count(item.channel, "dead" if dead else "failed")
        if dead:
            _item_log(item).error("notification dead", error=error, expired=expired)
        else:
            _item_log(item).warning("notification failed", error=error,
                                    retry_in_s=round(wait_s, 1))

    if channel is None:
        fail("the channel is no longer configured", 0.0, permanent=True)
        return
    kind = "kafka" if channel.type == "kafka" else "http"
    transport = transports.get(kind)
    if transport is None:
        fail(f"no {kind} transport is configured", backoff_s(item.attempts + 1), permanent=False)
        return
    try:
        reply = transport.post(_target(channel), item.payload, _headers(channel, item),
                               channel.timeout_s)
    except DeliveryError as exc:
        fail(str(exc), backoff_s(item.attempts + 1), permanent=False)
        return
    except Exception as exc:  # its message might quote the URL: only its kind is kept
        fail(f"unexpected {type(exc).__name__}", backoff_s(item.attempts + 1), permanent=False)
        return
    status = reply.status
    if 200 <= status < 300:
        if not _fenced(item, lambda: outbox.mark_sent(item.id, now,
                                                      claim_token=item.claim_token)):
            return
        report.count(item.channel, "sent")
        _item_log(item).info("notification sent", status=status)
    elif status == 429:
        wait = reply.retry_after_s if reply.retry_after_s is not None else backoff_s(item.attempts + 1)
        fail("HTTP 429 (rate limited)", min(wait, MAX_RETRY_AFTER_S), permanent=False)
    elif status >= 500 or status == 408:
        fail(f"HTTP {status}", backoff_s(item.attempts + 1), permanent=False)
    else:
        fail(f"HTTP {status}", backoff_s(item.attempts + 1),
             permanent=item.attempts + 1 >= MAX_CLIENT_ERRORS)


def _fenced(item: OutboxItem, mark: Callable[[], None]) -> bool:
    """Record an outcome under the item's claim; False (logged) when another worker took the
    claim over meanwhile: then its outcome is that worker's to record."""
    try:
        mark()
    except LeaseLost as exc:
        _item_log(item).warning("notification claim lost", error=str(exc))
        return False
    return True


def deliver(outbox: OutboxQueue, channels: Mapping[str, ChannelSettings],
            transports: Mapping[str, Transport], now: Callable[[], datetime],
            max_items: int = 1000, give_up_after: timedelta | None = timedelta(days=2),
            pace_s: Mapping[str, float] = PACE_S) -> DeliveryReport:
    """Send what is due, channel by channel in enqueue order, until nothing is due or
    ``max_items`` attempts were made. ``transports`` maps ``"http"`` and ``"kafka"``;
    ``pace_s`` spaces posts to one channel by its type (wall time).

    Several workers may deliver from one outbox at once: each round claims the channel heads
    it sends (``OutboxQueue.claim``), so no two workers send one notification, and gives up
    what it did not send when it ends. A round posts at most once per channel, so a claim is
    leased for longer than a round can take (every channel's timeout, each an overall
    deadline on its post, plus a minute); an outcome is recorded only under the claim it was
    sent under (a worker whose claim was taken over records nothing)."""
    report = DeliveryReport()
    worker = uuid.uuid4().hex
    lease = timedelta(seconds=60 + sum(c.timeout_s for c in channels.values()))
    try:
        _rounds(outbox, channels, transports, now, max_items, give_up_after, pace_s, report,
                worker, lease)
    finally:
        outbox.release(worker)
    return report


def _rounds(outbox: OutboxQueue, channels: Mapping[str, ChannelSettings],
            transports: Mapping[str, Transport], now: Callable[[], datetime], max_items: int,
            give_up_after: timedelta | None, pace_s: Mapping[str, float],
            report: DeliveryReport, worker: str, lease: timedelta) -> None:
    attempts = 0
    last_post: dict[str, float] = {}
    while attempts < max_items:
        items = outbox.claim(now(), worker, lease, limit=max_items - attempts)
        if not items:
            break
        waits = {}
        for item in items:
            channel = channels.get(item.channel)
            gap = pace_s.get(channel.type, 0.0) if channel is not None else 0.0
            posted = last_post.get(item.channel)
            waits[item.id] = 0.0 if posted is None else posted + gap - time.monotonic()
        ready = [item for item in items if waits[item.id] <= 0]
        if not ready:
            time.sleep(min(waits.values()))
            continue
        for item in ready:
            _attempt(outbox, item, channels.get(item.channel), transports, now(), give_up_after,
                     report)
            last_post[item.channel] = time.monotonic()
            attempts += 1


def run_worker(outbox: OutboxQueue, channels: Mapping[str, ChannelSettings],
               transports: Mapping[str, Transport], stop: threading.Event,
               now: Callable[[], datetime], idle_sleep: float = 5.0,
               on_report: Callable[[DeliveryReport], None] | None = None) -> None:
    """Deliver until ``stop`` is set, sleeping up to ``idle_sleep`` s when nothing is due.
    A failing round is logged and retried; it never ends the loop."""
    while not stop.is_set():
        try:
            report = deliver(outbox, channels, transports, now)
            if on_report is not None and (report.sent or report.failed or report.dead):
                on_report(report)
            wait = idle_sleep
            nxt = outbox.next_due_at()
            if nxt is not None:
                wait = min(idle_sleep, max(0.0, (nxt - now()).total_seconds()))
        except Exception as exc:  # the worker outlives any one round
            error = str(exc) if isinstance(exc, AlertError) else type(exc).__name__
            log.error("delivery round failed", error=error)
            wait = idle_sleep
        stop.wait(wait)
