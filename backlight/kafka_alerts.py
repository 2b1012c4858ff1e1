"""Alerts as CloudEvents on Kafka: the ``Transport`` (alerts/delivery.py) that publishes them
with ingest's producer. It lives in the shell, which wires ingest and alerts together, so that
the alerts package imports nothing of ingest (and Kafka's client loads only where a Kafka
channel is configured)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kafka.errors import KafkaError

from alerts.channels.cloudevent import CONTENT_TYPE
from alerts.delivery import Response
from alerts.errors import DeliveryError
from ingest.errors import KafkaUnavailable
from ingest.transport import KafkaSink


class KafkaTransport:
    """Publishes CloudEvents (structured mode) with ``ingest.transport.KafkaSink``: the "url" is
    the topic, the message key the event's subject (the alert key). It connects on first use,
    so a broker that is down fails attempts (retried with backoff), never the worker's start."""

    def __init__(self, bootstrap: str, **options: Any) -> None:
        self._bootstrap = bootstrap
        self._options = {"max_block_ms": 10_000, **options}  # a down broker must not stall us
        self._sink: KafkaSink | None = None

    def post(self, url: str, body: bytes, headers: Mapping[str, str],
             timeout_s: float) -> Response:
        """Publish one CloudEvent to the topic ``url`` and wait for the brokers' ack."""
        key = json.loads(body).get("subject")
        kafka_headers = [("content-type", CONTENT_TYPE.encode())]
        try:
            if self._sink is None:
                self._sink = KafkaSink(self._bootstrap, client_id="backlight-alerts",
                                       **self._options)
            self._sink.send(url, value=body, key=key.encode() if key else None,
                            headers=kafka_headers)
            self._sink.flush(timeout_s)
        except (KafkaUnavailable, KafkaError) as exc:
            raise DeliveryError(f"publishing to Kafka failed: {exc}") from None
        return Response(200)

    def close(self) -> None:
        """Flush and close the producer."""
        if self._sink is not None:
            self._sink.close()
            self._sink = None
