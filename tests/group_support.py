"""Helpers for consumer-group tests on a shared store: a config per consumer process (its own
client id, so the broker can tell the members apart), the group's assignment as the group
coordinator has it, the store read back page by page, and the live maps checked against
pm4py on the store's events; a member of the group wired as `backlight consume` wires it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
from conftest import write_config
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from backlight.config import Settings
from backlight.jobs import live_maps, live_subscription
from ingest.consumer import Consumer, ConsumerOptions, ConsumerStats
from ingest.rdkafka import RdKafkaSource
from ingest.transport import KafkaSink, KafkaSource
from storage import EventStore, open_store

PAGE = 20_000


def group_config(path: Path, bootstrap: str, store_url: str, topic: str, process: str,
                 group: str, client_id: str, batch_size: int, extra: str = "") -> Path:
    """conftest's write_config with the store at ``store_url`` (e.g. PostgreSQL) and the
    consumer's own ``client_id`` and ``batch_size``."""
    return write_config(path, bootstrap, store_url, [(topic, process)], group, extra=extra,
                        kafka=f'client_id = "{client_id}"\nbatch_size = {batch_size}\n')


def assignment(bootstrap: str, group: str) -> dict[str, frozenset[int]] | None:
    """Each member's partitions by client id, as the group coordinator has them (None while
    the group is not stable, or its coordinator not yet known, as on a new broker)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-group-probe")
    try:
        info = admin.describe_groups([group])[group]
    except KafkaError as exc:
        if exc.retriable:
            return None
        raise
    finally:
        admin.close()
    if info["group_state"] != "Stable":
        return None
    out: dict[str, frozenset[int]] = {}
    for member in info["members"]:
        given = (member.get("member_assignment") or {}).get("assigned_partitions") or []
        out[member["client_id"]] = frozenset(p for topic in given for p in topic["partitions"])
    return out


def stored_from(store_url: str, topic: str, partitions: frozenset[int]) -> bool:
    """Whether the store holds an event that came through one of these partitions."""
    with psycopg.connect(store_url) as conn:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM events WHERE topic = %s"
                           " AND partition = ANY(%s))", (topic, sorted(partitions))).fetchone()
    return bool(row and row[0])


def wait_until(what: str, check: Callable[[], bool], timeout_s: float, every_s: float) -> None:
    """Poll ``check`` every ``every_s`` until true (the checks here cost the broker or the
    database a query, so not as often as test_rebalance's wait_for); fail after ``timeout_s``,
    a generous bound that only proves nothing hangs."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting until {what}")
        time.sleep(every_s)


def stored_total(store: EventStore) -> int:
    return sum(c.events for c in store.counts())


def read_back(store: EventStore) -> tuple[list[str], dict[int, int]]:
    """Every stored event id in store order, and per partition the offset after the last
    event stored from it (what the group's committed offset should be), page by page."""
    ids: list[str] = []
    after: dict[int, int] = {}
    at = 0
    while rows := store.since(at, PAGE):
        for _, event, origin in rows:
            ids.append(event.event_id)
            if origin is not None:
                after[origin.partition] = max(after.get(origin.partition, 0), origin.offset + 1)
        at = rows[-1][0]
    return ids, after


def owns_everything(members: Sequence[Member], partitions: int, head: int) -> bool:
    """The members own disjoint partitions covering the topic, and each live map follows its
    own and has handled the store up to ``head``."""
    owned = [m.consumer.stats.partitions for m in members]
    if sum(map(len, owned)) != partitions or len(frozenset().union(*owned)) != partitions:
        return False
    return all(m.settled(head) for m in members)


def check_live_sum(members: Sequence[Member], store: EventStore, process: str) -> None:
    """Each member's live map holds only its partitions; summed, they are pm4py's DFG (edges,
    start and end activities), events and cases of the store's events of the process."""
    import pm4py

    for m in members:
        assert m.live.lanes <= m.consumer.stats.partitions, m.name
    frame = store.events(process).sort(["case_id", "timestamp", "seq"]).to_pandas()
    dfg, starts, ends = pm4py.discover_dfg(frame, activity_key="activity",
                                           case_id_key="case_id", timestamp_key="timestamp")
    views = [m.live[process] for m in members if process in m.live]
    edges: Counter[tuple[str, str]] = Counter()
    first: Counter[str] = Counter()
    last: Counter[str] = Counter()
    for view in views:
        edges.update(view.edge_counts)
        first.update(view.start_activities)
        last.update(view.end_activities)
    assert dict(edges) == dict(dfg)
    assert dict(first) == dict(starts)
    assert dict(last) == dict(ends)
    assert sum(v.events for v in views) == len(frame)
    assert sum(v.cases for v in views) == frame["case_id"].nunique()


PARTITIONS = 6


CLIENTS = {"confluent-kafka": RdKafkaSource, "kafka-python": KafkaSource}
"""The consumer's two sources (``[kafka] client``): each must keep the same contract."""


class Member:
    """One consumer of the group in this process, wired as `backlight consume` wires it."""

    def __init__(self, settings: Settings, name: str, batch_size: int = 40) -> None:
        k = settings.kafka
        self.name = name
        self.store = open_store(settings.store.url)
        self.source = CLIENTS[k.client](k.bootstrap_servers, k.group_id,
                                  [s.topic for s in settings.sources], client_id=name,
                                  max_poll_records=batch_size, session_timeout_ms=6000,
                                  heartbeat_interval_ms=1000)
        self.sink = KafkaSink(k.bootstrap_servers, client_id=f"{name}-dlq")
        self.live = live_maps(settings)
        self.consumer = Consumer(self.source, self.sink, self.store, settings.specs(),
                                 [live_subscription(self.live)],
                                 options=ConsumerOptions(batch_size))
        self.stop = threading.Event()
        self.stats: ConsumerStats | None = None
        self.thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.stats = self.consumer.run(self.stop)

    def halt(self) -> ConsumerStats:
        """Finish the batch in hand and return (still a member of the group)."""
        self.stop.set()
        self.thread.join(60)
        assert self.stats is not None, f"{self.name} did not stop"
        return self.stats

    def close(self) -> None:
        """Leave the group (its partitions are revoked) and let go of everything."""
        for part in (self.source, self.sink, self.store):
            part.close()

    def settled(self, head: int) -> bool:
        """Its live map follows exactly its partitions and has handled the store up to head."""
        live = self.consumer.dispatcher.stats()[0]
        owned = self.consumer.stats.partitions
        return (live.partitions == owned == self.live.following == self.source.partitions()
                and live.mark >= head)


def committed_offsets(settings: Settings, topic: str) -> dict[int, int | None]:
    """The group's committed offset per partition, as the broker has it."""
    probe = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers,
                          group_id=settings.kafka.group_id, enable_auto_commit=False)
    try:
        return {p: probe.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        probe.close()
