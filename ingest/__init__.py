"""Ingest: Kafka in, every case event stored exactly once, bad messages to <topic>.dlq.

Owns the way in: the Kafka sources and sinks, the consumer (decode, store, commit offsets
only after the store commit, dead letters with the reason in their headers), the dispatcher
that hands each stored batch to the subscribers the shell wires in (the live map, the
read-model folder, the alert evaluator), the local broker for development, and the producers
of events (``replay`` of log files, ``simulate``).

Beside mining and alerts, not below them: it imports only ``schemas`` and ``storage``, and must
never import mining, alerts or the ``backlight`` shell; what it feeds is handed to it as
subscribers.

The public surface is re-exported here; the modules behind it are free to change. Each name
loads its module on first use (``schemas.lazy``), so that importing one part
(``ingest.logfiles`` for ``backlight mine``) does not load the others (kafka-python, the
consumer, the broker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.lazy import lazy_exports

if TYPE_CHECKING:
    from ingest.broker import LocalBroker
    from ingest.consumer import (
        Consumer,
        ConsumerOptions,
        ConsumerStats,
        Policy,
        Subscriber,
        dead_letter_topic,
    )
    from ingest.dispatcher import Dispatcher
    from ingest.errors import (
        BacklightError,
        BrokerError,
        InvalidEvent,
        KafkaUnavailable,
        LogFileError,
        StoreError,
    )
    from ingest.logfiles import read_log
    from ingest.publish import publish
    from ingest.subscribers import SubscriberStats, Subscription
    from ingest.transport import KafkaSink, KafkaSource, Message, Sink, Source, ensure_topics
    from schemas.frame import FRAME_SCHEMA
    from storage import EventStore, SQLiteStore, open_store

_HOMES: dict[str, tuple[str, ...]] = {
    "ingest.broker": ("LocalBroker",),
    "ingest.consumer": ("Consumer", "ConsumerOptions", "ConsumerStats", "Policy", "Subscriber",
                        "dead_letter_topic"),
    "ingest.dispatcher": ("Dispatcher",),
    "ingest.errors": ("BacklightError", "BrokerError", "InvalidEvent", "KafkaUnavailable",
                      "LogFileError", "StoreError"),
    "ingest.logfiles": ("read_log",),
    "ingest.publish": ("publish",),
    "storage": ("EventStore", "SQLiteStore", "open_store"),
    "schemas.frame": ("FRAME_SCHEMA",),
    "ingest.subscribers": ("SubscriberStats", "Subscription"),
    "ingest.transport": ("KafkaSink", "KafkaSource", "Message", "Sink", "Source", "ensure_topics"),
}

__all__ = [
    "FRAME_SCHEMA", "BacklightError", "BrokerError", "Consumer", "ConsumerOptions", "ConsumerStats",
    "Dispatcher",
    "EventStore",
    "InvalidEvent", "KafkaSink", "KafkaSource", "KafkaUnavailable", "LocalBroker", "LogFileError",
    "Message", "Policy", "SQLiteStore", "Sink", "Source", "StoreError", "Subscriber",
    "SubscriberStats", "Subscription",
    "dead_letter_topic", "ensure_topics", "open_store", "publish", "read_log",
]

lazy_exports(__name__, _HOMES)
