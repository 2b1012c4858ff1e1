"""Ingest: Kafka in, every case event stored exactly once, bad messages to <topic>.dlq.

The public surface is re-exported here; the modules behind it are free to change. Each name
loads its module on first use (PEP 562), so that importing one part (``ingest.logfiles`` for
``backlight mine``) does not load the others (kafka-python, the consumer, the broker).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

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
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "FRAME_SCHEMA", "BacklightError", "BrokerError", "Consumer", "ConsumerOptions", "ConsumerStats",
    "Dispatcher",
    "EventStore",
    "InvalidEvent", "KafkaSink", "KafkaSource", "KafkaUnavailable", "LocalBroker", "LogFileError",
    "Message", "Policy", "SQLiteStore", "Sink", "Source", "StoreError", "Subscriber",
    "SubscriberStats", "Subscription",
    "dead_letter_topic", "ensure_topics", "open_store", "publish", "read_log",
]


class _Package(ModuleType):
    """The ``ingest`` module: loads an exported name's module when the name is first read."""

    def __getattr__(self, name: str) -> object:
        home = _HOME.get(name)
        if home is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value: object) -> None:
        # ``ingest.publish`` is a module and the function the package exports under that name;
        # the import system binds the module to the package when it first loads it: the
        # package keeps exporting the function, as it did when it imported it eagerly.
        if isinstance(value, ModuleType) and _HOME.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(__all__))


sys.modules[__name__].__class__ = _Package
