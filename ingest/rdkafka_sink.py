"""A ``Sink`` through librdkafka (confluent-kafka): the consumer's dead-letter producer.

Why. kafka-python's producer runs its sender in a Python thread that took about 4% of the
consumer's GIL even with nothing to send; librdkafka sends on its own threads, outside the
GIL, and Python only runs the delivery reports, in ``flush``. The other producers (replay,
alert CloudEvents) stay on ``ingest.transport.KafkaSink``: they are not in the consumer.

Delivery. ``send`` queues a message (``acks=all``); ``flush`` waits for the broker's reports
and raises ``DeliveryFailed`` naming each message that was refused (``too_large`` when the
broker or the client says it is larger than the topic takes) or not delivered within
``delivery_timeout_s`` (the broker away), and how many are still in flight when its own
timeout ends first (those keep going: ``flush`` again). Not idempotent: a message retried
after a timeout may arrive twice (dead letters are at least once; each carries its source
offset).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from ingest.errors import DeliveryFailed, KafkaUnavailable
from ingest.rdkafka import OPTIONS
from ingest.transport import HeaderList, Undelivered

log = structlog.stdlib.get_logger("backlight.consume.dead_letters")
DELIVERY_TIMEOUT_S = 30.0
"""How long librdkafka tries to deliver a message before reporting it failed (its
``message.timeout.ms``); the caller decides what then (the consumer waits and sends again)."""
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The client's own limit (``message.max.bytes``); the topic's is usually lower and is what
refuses a message (``too_large``)."""
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE})


class RdKafkaSink:
    """A librdkafka producer (acks from all in-sync replicas) with per-message delivery reports."""

    def __init__(self, bootstrap: str, client_id: str = "backlight",
                 delivery_timeout_s: float = DELIVERY_TIMEOUT_S, **overrides: Any) -> None:
        """``overrides``: the security options of ``KafkaSettings.client_options``."""
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap, "client.id": client_id, "acks": "all",
            "linger.ms": 20, "message.max.bytes": MAX_MESSAGE_BYTES,
            "message.timeout.ms": round(delivery_timeout_s * 1000),
            "logger": logging.getLogger("backlight.consume.librdkafka"),
        }
        for key, value in overrides.items():
            if key not in OPTIONS or key.endswith(("_timeout_ms", "_interval_ms")):
                raise ValueError(f"{key}: not an option of the librdkafka producer")
            conf[OPTIONS[key]] = value
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise KafkaUnavailable(f"the Kafka client refused its settings: {exc}") from exc
        self._failed: list[Undelivered] = []
        self._in_flight = 0

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: HeaderList = ()) -> None:
        """Queue one message; one the client refuses at once (too large for it) is reported
        by the next ``flush`` like one the broker refused."""
        report = functools.partial(self._delivered, topic, value, key, headers)
        while True:
            try:
                self._producer.produce(topic, value, key, headers=list(headers),
                                       on_delivery=report)
            except BufferError:  # the client's queue is full: serve reports, then again
                self._producer.poll(0.1)
                continue
            except KafkaException as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                self._failed.append(Undelivered(
                    topic, value, key, headers,
                    error is not None and error.code() in _TOO_LARGE, str(exc)))
                return
            self._in_flight += 1
            return

    def _delivered(self, topic: str, value: bytes, key: bytes | None, headers: HeaderList,
                   error: KafkaError | None, _: Any) -> None:
        self._in_flight -= 1
        if error is not None:
            self._failed.append(Undelivered(topic, value, key, headers,
                                            error.code() in _TOO_LARGE,
                                            f"{error.name()}: {error.str()}"))

    def flush(self, timeout_s: float = 60.0) -> None:
        """Return once the broker acknowledged every message sent; else ``DeliveryFailed``
        with the failed ones and the count still in flight after ``timeout_s``."""
        self._producer.flush(timeout_s)
        if self._failed or self._in_flight:
            failed, self._failed = self._failed, []
            first = failed[0].reason if failed else f"not acknowledged within {timeout_s}s"
            raise DeliveryFailed(f"{len(failed)} messages not delivered, {self._in_flight} in "
                                 f"flight: {first}", list(failed), self._in_flight)

    def close(self) -> None:
        """Give what is queued a moment, then let it go (the caller did not commit it)."""
        left = self._producer.flush(min(3.0, DELIVERY_TIMEOUT_S))
        if left:
            log.warning("closing the producer with messages not acknowledged", messages=left)
