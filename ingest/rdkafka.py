"""The consumer's ``Source`` through librdkafka (confluent-kafka), the default client for ingest.

Why a second client. kafka-python parses every record in Python: on BPIC 2012 that was about
half of the consumer's time under the GIL (py-spy ``--gil``), more than decoding, storing and
the live map together. librdkafka fetches and parses on its own threads, outside the GIL; what
is left in Python is a call per message and a small ``Record``. The producers (dead letters,
replay, alert CloudEvents) and the admin calls stay on kafka-python (``ingest.transport``):
they are not on the hot path. ``[kafka] client = "kafka-python"`` selects ``KafkaSource``.

Rebalances, the same contract as ``KafkaSource`` (read its module docstring). The group
protocol is the eager one. librdkafka calls ``on_assign``, ``on_revoke`` and ``on_lost``
inside ``consume()`` on the polling thread (the binding assigns and unassigns after them); the
revoke callback calls the consumer's handover (it waits, bounded, for the batch being stored
on the writer thread and records its offsets as handled), then commits, while this member
still owns them, the revoked partitions' handled offsets not committed yet (librdkafka does not
finish the unassignment, and so the rebalance, before its outstanding commits are answered);
on loss it forgets them (the next owner re-reads them; the store keeps each event once).

Commits are asynchronous, never a blocking call. A synchronous commit has no timeout in
librdkafka: while the group coordinator cannot be reached it waits for it, and a commit made
just as the broker went away blocked the poll loop for as long as the outage lasted, and at
times for good after it (no batch, no lag report: the consumer looked stalled to ``/readyz``
and a SIGTERM was never acted on). ``commit`` hands the offsets to librdkafka and returns; its
answer comes back through the ``on_commit`` callback, served by the next ``consume()`` (or by
``close()``), which forgets what was committed and keeps what was refused for the next commit.

Errors. A broker that cannot be reached at start raises ``KafkaUnavailable`` (like
``KafkaSource``); later, librdkafka reconnects by itself: transient errors it reports through
``consume()`` are logged (once per kind a minute) and the poll goes on; a fatal one raises
``KafkaUnavailable`` naming it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
import structlog
from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from ingest.errors import KafkaUnavailable
from ingest.group_offsets import GroupOffsets, Partition, Rebalance
from ingest.transport import CLOSE_TIMEOUT_MS, LOOKUP_TIMEOUT_MS, HeaderList, Message

log = structlog.stdlib.get_logger("backlight.consume.rdkafka")

OPTIONS: Mapping[str, str] = {
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
}
"""``KafkaSource``'s keyword options (kafka-python's names) and librdkafka's names for them."""
_IGNORED = frozenset({"max_poll_records"})  # the poll asks for its batch size itself
_REBALANCING = frozenset({KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                          KafkaError.UNKNOWN_MEMBER_ID})
_REPEAT_WARNING_S = 60.0
METADATA_MAX_AGE_S = 30.0
"""How long the lag lookup trusts the partitions it learnt for the subscribed topics."""


class Record(msgspec.Struct, frozen=True, gc=False):
    """One message, as the consumer reads it (``ingest.transport.Message``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: HeaderList


def settings(bootstrap: str, group_id: str, client_id: str,
             overrides: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
    """librdkafka's configuration for a consumer, from ``KafkaSource``'s arguments, and how
    long to wait for the broker at start (seconds). Raises ``ValueError`` naming an option it
    does not know."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap, "group.id": group_id, "client.id": client_id,
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # A small pre-fetch (about a batch ahead), topped up as soon as it is drained below
        # its minimum: librdkafka's defaults (100k messages, 64 MB, fetches of up to 50 MB)
        # took the consumer's peak RSS on BPIC 2012 from 141 to 179 MiB; with these it is
        # 137, and the source alone reads 540k events/s. Without the short backoff, a fetch
        # postponed for a full second whenever the queue was full capped it at 28k events/s.
        "fetch.max.bytes": 1024 * 1024, "max.partition.fetch.bytes": 512 * 1024,
        "queued.max.messages.kbytes": 4 * 1024, "queued.min.messages": 5_000,
        "fetch.queue.backoff.ms": 5,
        "logger": logging.getLogger("backlight.consume.librdkafka"),
    }
    wait_s = 15.0
    for key, value in overrides.items():
        if key == "bootstrap_timeout_ms":
            wait_s = value / 1000
        elif key in OPTIONS:
            conf[OPTIONS[key]] = value
        elif key not in _IGNORED:
            raise ValueError(f"{key}: not an option of the librdkafka source")
    return conf, wait_s


class RdKafkaSource:
    """A librdkafka consumer in a group, auto-commit off (Backlight commits after storing)."""

    def __init__(self, bootstrap: str, group_id: str, topics: Iterable[str],
                 client_id: str = "backlight", **overrides: Any) -> None:
        conf, wait_s = settings(bootstrap, group_id, client_id, overrides)
        conf["on_commit"] = self._on_commit
        try:
            self._consumer = _Consumer(conf)
        except KafkaException as exc:
            raise KafkaUnavailable(f"the Kafka client refused its settings: {exc}") from exc
        try:
            self._consumer.list_topics(timeout=wait_s)
        except KafkaException as exc:
            self._consumer.close()
            raise KafkaUnavailable(f"no Kafka broker answered at {bootstrap}") from exc
        self._topics = list(topics)
        self._group = GroupOffsets(log)
        self._warned: dict[int, float] = {}
        self._parts: tuple[float, list[TopicPartition]] | None = None  # (looked up, partitions)
        self._consumer.subscribe(self._topics, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        """Up to ``max_records`` messages: those fetched already, else the first to arrive
        within ``timeout_s``."""
        consumer = self._consumer
        # Any: the stubs allow None fields, which only error events have (filtered here).
        messages: list[Any] = consumer.consume(max_records, 0)
        if not messages and timeout_s > 0:
            first = consumer.poll(timeout_s)  # returns as soon as one arrives
            if first is None:
                return []
            messages = [first, *consumer.consume(max_records - 1, 0)]
        records: list[Message] = [
            Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers() or ())
            for m in messages if m.error() is None]
        if len(records) != len(messages):
            self._errors(messages)
        return records

    def _errors(self, messages: list[Any]) -> None:
        for m in messages:
            error = m.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                continue
            if error.fatal():
                raise KafkaUnavailable(f"the Kafka client stopped: {error.str()}")
            now = time.monotonic()
            if now - self._warned.get(error.code(), float("-inf")) >= _REPEAT_WARNING_S:
                self._warned[error.code()] = now
                log.warning("the Kafka client reported an error; it retries by itself",
                            error=error.name(), reason=error.str(), topic=m.topic())

    def set_handover(self, handover: Callable[[], None]) -> None:
        self._group.set_handover(handover)

    def handled(self, next_offsets: Mapping[Partition, int]) -> None:
        self._group.handled(next_offsets)

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit, with any earlier refused commit of partitions still ours; partitions no
        longer assigned are left out (the revoke callback committed what was handled).
        Asynchronous: ``_on_commit`` learns the answer (module docstring)."""
        offsets = self._group.to_commit(next_offsets, self.partitions)
        if offsets:
            self._commit(offsets)

    def _commit(self, offsets: Mapping[Partition, int]) -> bool:
        """Hand ``offsets`` to librdkafka to commit, without waiting; False (logged, the
        offsets kept) when it refuses them at once."""
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=True)
        except KafkaException as exc:
            self._commit_failed(exc.args[0] if exc.args else exc, len(offsets))
            return False
        return True

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit (on the thread serving callbacks): forget what
        was committed; what was refused stays handled and goes with the next commit."""
        if error is not None:  # the whole request failed: nothing of it was committed
            if error.code() != KafkaError._NO_OFFSET:  # (that one: nothing new to commit)
                self._commit_failed(error, len(partitions))
            return
        self._group.committed({(tp.topic, tp.partition): tp.offset for tp in partitions
                               if tp.error is None and tp.offset >= 0})
        failed = [tp for tp in partitions if tp.error is not None]
        if failed:
            self._commit_failed(failed[0].error, len(failed))

    def _commit_failed(self, error: object, partitions: int) -> None:
        code = error.code() if isinstance(error, KafkaError) else None
        self._group.commit_failed(code, code in _REBALANCING, partitions, str(error))

    def rebalances(self) -> list[Rebalance]:
        return self._group.rebalances()

    def partitions(self) -> frozenset[Partition]:
        return frozenset((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def _on_assign(self, _: Any, assigned: list[TopicPartition]) -> None:
        self._group.assigned(frozenset((tp.topic, tp.partition) for tp in assigned))

    def _on_revoke(self, _: Any, revoked: list[TopicPartition]) -> None:
        self._revoked(revoked, lost=False)

    def _on_lost(self, _: Any, lost: list[TopicPartition]) -> None:
        self._revoked(lost, lost=True)

    def _revoked(self, revoked: list[TopicPartition], lost: bool) -> None:
        """Commit what was handled of the revoked partitions and not committed yet (unless
        lost), and record the change. A callback must not raise into librdkafka."""
        try:
            offsets = self._group.revoke(frozenset((tp.topic, tp.partition) for tp in revoked),
                                         lost)
            # Answered before librdkafka finishes the unassignment.
            if offsets and self._commit(offsets):
                self._group.committed_on_revoke(len(offsets))
        except Exception:
            log.exception("the revoke handover failed; the next owner re-reads what was not "
                          "committed")

    def assigned(self) -> bool:
        return bool(self._consumer.assignment())

    def lag(self) -> int:
        return sum(self.lags().values())

    def lags(self) -> dict[tuple[str, int], int]:
        """Per partition of the subscribed topics: its end offset minus this consumer's
        position (its own partitions) or the group's committed offset (the others, and its own
        before it read any). Its own partitions' end offsets come from the last fetch, with no
        request: a request waits behind the fetch in flight (up to ``fetch.wait.max.ms``), and
        the observed consumer looks up its lag every second."""
        consumer, wait = self._consumer, LOOKUP_TIMEOUT_MS / 1000
        try:
            parts = self._topic_partitions(wait)
            if not parts:
                return {}
            mine = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            done = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(
                [tp for tp in parts if (tp.topic, tp.partition) in mine]) if tp.offset >= 0}
            rest = [tp for tp in parts if (tp.topic, tp.partition) not in done]
            if rest:
                done |= {(tp.topic, tp.partition): tp.offset
                         for tp in consumer.committed(rest, timeout=wait) if tp.offset >= 0}
            out: dict[tuple[str, int], int] = {}
            for tp in parts:
                key = (tp.topic, tp.partition)
                low, high = (consumer.get_watermark_offsets(tp, cached=True) if key in mine
                             else (-1, -1))
                if low < 0 or high < 0:
                    low, high = consumer.get_watermark_offsets(tp, timeout=wait)
                out[key] = max(0, high - done.get(key, low))
            return out
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot look up the consumer lag: {exc}") from exc

    def _topic_partitions(self, wait_s: float) -> list[TopicPartition]:
        """The subscribed topics' partitions, from metadata at most ``METADATA_MAX_AGE_S`` old."""
        now = time.monotonic()
        if self._parts is None or now - self._parts[0] > METADATA_MAX_AGE_S:
            topics = self._consumer.list_topics(timeout=wait_s).topics
            self._parts = (now, [TopicPartition(topic, p) for topic in self._topics
                                 if topic in topics and topics[topic].error is None
                                 for p in sorted(topics[topic].partitions)])
        return self._parts[1]

    def close(self) -> None:
        """Leave the group (the revoke callback commits what was handled), waiting at most
        ``CLOSE_TIMEOUT_MS``: while the broker is down, librdkafka would wait much longer
        after a SIGTERM; the group then hands the partitions on after the session timeout."""
        closing = threading.Thread(target=self._consumer.close, name="backlight-kafka-close",
                                   daemon=True)
        closing.start()
        closing.join(CLOSE_TIMEOUT_MS / 1000)
        if closing.is_alive():
            log.warning("leaving the consumer group took too long; the group hands the "
                        "partitions on after the session timeout", waited_s=CLOSE_TIMEOUT_MS / 1000)
