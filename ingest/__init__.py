"""Ingest: Kafka in, every case event stored exactly once, bad messages to <topic>.dlq.

The public surface is re-exported here; the modules behind it are free to change.
"""

from ingest.broker import LocalBroker
from ingest.consumer import Consumer, ConsumerStats, Policy, Subscriber, dead_letter_topic
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
from ingest.store import FRAME_SCHEMA, EventStore, SQLiteStore, open_store
from ingest.subscribers import SubscriberStats, Subscription
from ingest.transport import KafkaSink, KafkaSource, Message, Sink, Source, ensure_topics

__all__ = [
    "FRAME_SCHEMA", "BacklightError", "BrokerError", "Consumer", "ConsumerStats", "Dispatcher",
    "EventStore",
    "InvalidEvent", "KafkaSink", "KafkaSource", "KafkaUnavailable", "LocalBroker", "LogFileError",
    "Message", "Policy", "SQLiteStore", "Sink", "Source", "StoreError", "Subscriber",
    "SubscriberStats", "Subscription",
    "dead_letter_topic", "ensure_topics", "open_store", "publish", "read_log",
]
