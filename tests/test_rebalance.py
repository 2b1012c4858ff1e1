"""A consumer group whose members come and go: every event stored once, each batch committed
before its partition moves, and live maps that follow their partitions (the members' maps
sum to the DFG of the store, nothing counted twice)."""

from __future__ import annotations

import os
import random
import signal
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import event_frame, popen_backlight, write_config
from group_support import CLIENTS, PARTITIONS, Member, committed_offsets

from backlight.config import Settings, load
from backlight.jobs import live_subscription
from ingest.consumer import dead_letter_topic
from ingest.dispatcher import Dispatcher
from ingest.publish import encode
from ingest.simulate import simulate
from ingest.transport import KafkaSink, ensure_topics
from mining.dfg import discover_dfg
from mining.live_maps import LiveMaps
from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import EventStore, SQLiteStore, open_store

LIVE = "[live]\nidle_horizon_days = 3650\n"
Lane = tuple[str, int]


# -- pure: the partition-aware live map against the batch DFG ------------------------------

def keyed(events: Sequence[CaseEvent], topic: str = "t") -> list[Coordinates]:
    """Where each event lands when published keyed by case id (a stable hash of it)."""
    offsets: Counter[int] = Counter()
    out = []
    for e in events:
        part = zlib.crc32(e.case_id.encode()) % PARTITIONS
        out.append(Coordinates(topic, part, offsets[part]))
        offsets[part] += 1
    return out


def pages(events: Sequence[CaseEvent], origins: Sequence[Coordinates], upto: int,
          size: int) -> Iterator[tuple[Sequence[CaseEvent], Sequence[Coordinates | None]]]:
    """The first ``upto`` stored events in store order, ``size`` at a time (the store's since)."""
    for at in range(0, upto, size):
        end = min(upto, at + size)
        yield events[at:end], origins[at:end]


def batch_counts(events: Sequence[CaseEvent], origins: Sequence[Coordinates],
                 lanes: Callable[[Lane], bool]) -> dict[str, dict[tuple[str, str], int]]:
    """discover_dfg's edge counts per process over the events of the accepted lanes."""
    out = {}
    for process in sorted({e.process for e in events}):
        mine = [e for e, o in zip(events, origins, strict=True)
                if e.process == process and lanes((o.topic, o.partition))]
        if mine:
            out[process] = discover_dfg(event_frame(mine)).counts()
    return out


def live_counts(maps: LiveMaps) -> dict[str, dict[tuple[str, str], int]]:
    return {p: dict(maps[p].edge_counts) for p in sorted(maps) if maps[p].events}


def summed(parts: Sequence[dict[str, dict[tuple[str, str], int]]]
           ) -> dict[str, dict[tuple[str, str], int]]:
    out: dict[str, Counter[tuple[str, str]]] = {}
    for part in parts:
        for process, counts in part.items():
            out.setdefault(process, Counter()).update(counts)
    return {p: dict(c) for p, c in out.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_partition_following_live_maps_equal_the_batch_dfg(seed: int) -> None:
    """Three instances, each at its own position in the stream, get partitions assigned and
    revoked at random: after every handover each equals the batch DFG of its partitions up
    to its position, and in the end their sum equals the batch DFG of everything."""
    rng = random.Random(seed)
    events = sorted(simulate("onboarding", 70, seed=seed).events
                    + simulate("claims", 50, seed=seed).events, key=lambda e: e.time_us)
    origins = keyed(events)
    everything = [("t", p) for p in range(PARTITIONS)]
    maps = [LiveMaps(idle_horizon=timedelta(days=3650)) for _ in range(3)]
    for m in maps:
        m.follow(frozenset())
    at = [0, 0, 0]
    for change in range(8):
        owner = {lane: rng.randrange(3) for lane in everything}
        for i, m in enumerate(maps):
            step = rng.randrange(len(events) // 10)
            target = min(len(events), at[i] + step)
            for lo in range(at[i], target, 37):  # fed in batches, filtered to its lanes
                hi = min(target, lo + 37)
                m(events[lo:hi], origins[lo:hi])
            at[i] = target
            mine = frozenset(lane for lane, o in owner.items() if o == i)
            m.follow(mine, pages(events, origins, at[i], rng.randrange(1, 200)))
            assert m.following == mine and m.lanes <= mine
            assert live_counts(m) == batch_counts(events[:at[i]], origins[:at[i]],
                                                  mine.__contains__), (seed, change, i)
    for i, m in enumerate(maps):
        m(events[at[i]:], origins[at[i]:])
    assert summed([live_counts(m) for m in maps]) == batch_counts(events, origins,
                                                                 lambda _: True)


def test_follow_reads_history_only_for_new_partitions_and_is_all_or_nothing() -> None:
    """Revoking (or keeping) partitions reads no history; a history that fails half-way
    leaves the map as it was, and the retry then builds the partitions exactly."""
    events = simulate("payments", 60, seed=9).events
    origins = keyed(events)
    maps = LiveMaps(idle_horizon=timedelta(days=3650))
    maps.follow({("t", 0), ("t", 1)})
    maps(events, origins)

    def unreadable() -> Iterator[tuple[Sequence[CaseEvent], Sequence[Coordinates | None]]]:
        yield events[:10], origins[:10]
        raise ConnectionError("store unreachable")

    assert maps.follow({("t", 0)}, unreadable()) == 0
    before = live_counts(maps)
    assert before == batch_counts(events, origins, {("t", 0)}.__contains__)
    with pytest.raises(ConnectionError):
        maps.follow({("t", 0), ("t", 2)}, unreadable())
    assert maps.following == {("t", 0)} and live_counts(maps) == before
    taken = maps.follow({("t", 0), ("t", 2)}, pages(events, origins, len(events), 25))
    assert taken == sum(o.partition == 2 for o in origins) > 0
    assert live_counts(maps) == batch_counts(events, origins, {("t", 0), ("t", 2)}.__contains__)


def test_dispatcher_builds_assigned_partitions_from_the_store_in_pages(tmp_path: Path) -> None:
    """A live-map subscription on a real store: assigned partitions are built from the
    store up to its mark, a page of batch_limit at a time, and then followed."""
    events = simulate("claims", 80, seed=2).events
    origins = keyed(events, "claims.events")
    store = SQLiteStore(tmp_path / "s.db")
    half = len(events) // 2
    store.write(events[:half], origins[:half])
    live = LiveMaps(idle_horizon=timedelta(days=3650))
    dispatcher = Dispatcher(store, [replace(live_subscription(live), batch_limit=40)])
    dispatcher.start()
    try:
        assert dispatcher.drain(5.0) and live.following == frozenset() and not live.lanes
        mine = {("claims.events", 1), ("claims.events", 4)}
        dispatcher.follow_partitions(mine)
        assert dispatcher.drain(5.0)
        stats = dispatcher.stats()[0]
        assert stats.partitions == mine and stats.handover_read == half
        new = store.write(events[half:], origins[half:])
        dispatcher.notify(None, events[half:], origins[half:])
        assert all(new) and dispatcher.drain(5.0)
        assert live_counts(live) == batch_counts(events, origins, mine.__contains__)
    finally:
        dispatcher.stop()
        store.close()


# -- real Kafka: members joining, leaving and killed -----------------------------------------


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


def publish_chunk(bootstrap: str, topic: str, events: Sequence[CaseEvent]) -> None:
    """Publish keyed by case id, as `backlight simulate` does, and wait for the broker."""
    sink = KafkaSink(bootstrap)
    for event in events:
        sink.send(topic, encode(event), key=event.case_id.encode())
    sink.flush()
    sink.close()


def group_settled(members: Sequence[Member], store: EventStore, total: int) -> bool:
    """Everything stored; the members own disjoint partitions covering the topic, and each
    live map follows its own and has caught up with the store."""
    if store.last_seq() < total or len(stored_ids(store)) < total:
        return False
    owned = [m.consumer.stats.partitions for m in members]
    if sum(map(len, owned)) != PARTITIONS or len(frozenset().union(*owned)) != PARTITIONS:
        return False
    head = store.last_seq()
    return all(m.settled(head) for m in members)


def stored_ids(store: EventStore) -> list[str]:
    return [e.event_id for _, e, _ in store.since(0, 10**7)]


def check_live_union(members: Sequence[Member], store: EventStore, process: str) -> None:
    """Each member's live map holds only its partitions; their sum is the store's DFG."""
    for m in members:
        assert m.live.lanes <= m.consumer.stats.partitions, m.name
    batch = discover_dfg(store.events(process))
    views = [m.live[process] for m in members if process in m.live]
    total: Counter[tuple[str, str]] = Counter()
    starts: Counter[str] = Counter()
    for view in views:
        total.update(view.edge_counts)
        starts.update(view.start_activities)
    assert dict(total) == batch.counts()
    assert dict(starts) == batch.start_activities
    assert sum(v.events for v in views) == len(stored_ids(store))


@pytest.fixture(params=list(CLIENTS))
def group(request: pytest.FixtureRequest, kafka_bootstrap: str, tmp_path: Path,
          unique: str) -> tuple[Settings, Path, str]:
    """A 6-partition topic (and its DLQ), a config for a fresh group and store, consumed with
    each Kafka client."""
    topic = f"rebalance.{unique}"
    ensure_topics(kafka_bootstrap, [topic, dead_letter_topic(topic)], partitions=PARTITIONS)
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, tmp_path / "s.db",
                       [(topic, "onboarding")], f"g-{unique}", extra=LIVE,
                       kafka=f'client = "{request.param}"')
    return load(cfg), cfg, topic


@pytest.mark.kafka
def test_members_joining_and_leaving_hand_over_cleanly(
        group: tuple[Settings, Path, str], kafka_bootstrap: str) -> None:
    """Two members, a third joins mid-stream and one leaves: every event stored once, none
    re-delivered (each batch committed before its partition moved; unless a member was evicted
    under load and lost its partitions, ``ConsumerStats.lost``), committed offsets equal
    what was stored, and the live maps, each of its own partitions, sum to the store's DFG."""
    settings, _, topic = group
    events = simulate("onboarding", 600, seed=21).events
    chunks = [events[i::3] for i in range(3)]  # three interleaved thirds, published in turn
    a, b = Member(settings, "a"), Member(settings, "b")
    store = open_store(settings.store.url)
    members = [a, b]
    try:
        wait_for("a and b share the partitions", lambda: all(
            m.consumer.stats.partitions for m in (a, b)))
        publish_chunk(kafka_bootstrap, topic, chunks[0])
        c = Member(settings, "c")  # joins while a and b consume the first third
        members.append(c)
        publish_chunk(kafka_bootstrap, topic, chunks[1])
        wait_for("c has partitions", lambda: bool(c.consumer.stats.partitions))
        b_stats = b.halt()  # leaves while the second third is consumed
        b.close()
        members.remove(b)
        publish_chunk(kafka_bootstrap, topic, chunks[2])
        wait_for("a and c own everything and caught up",
                 lambda: group_settled([a, c], store, len(events)))
        stats = [a.halt(), c.halt(), b_stats]

        ids = stored_ids(store)
        assert sorted(ids) == sorted(e.event_id for e in events)
        if not any(s.lost for s in stats):  # evicted under load: its uncommitted part is re-read
            assert sum(s.duplicates for s in stats) == 0
        assert all(s.stored > 0 for s in stats)
        assert min(s.rebalances for s in stats) >= 2
        check_live_union([a, c], store, "onboarding")
        live = {m.name: m.consumer.stats.subscribers["live-map"] for m in (a, c)}
        assert live["c"].handover_read > 0  # c built its partitions from the store
        assert committed_offsets(settings, topic) == {
            p: 1 + max(o.offset for _, _, o in store.since(0, 10**7)
                       if o is not None and o.partition == p) for p in range(PARTITIONS)}
    finally:
        for m in members:
            m.stop.set()
        for m in members:
            m.thread.join(30)
            m.close()
        store.close()


@pytest.mark.kafka
def test_member_killed_mid_stream_loses_and_double_counts_nothing(
        group: tuple[Settings, Path, str], kafka_bootstrap: str) -> None:
    """A `backlight consume` member is kill -9'd mid-stream: after the session timeout the
    others take its partitions over; the store holds exactly the produced set, and their
    live maps (built from the store) sum to its DFG, re-delivered events counted once."""
    settings, cfg, topic = group
    events = simulate("onboarding", 600, seed=22).events
    half = len(events) // 2
    a, b = Member(settings, "a"), Member(settings, "b")
    store = open_store(settings.store.url)
    try:
        with popen_backlight("--log-level", "WARNING", "consume", "--config", str(cfg)) as proc:
            wait_for("the subprocess holds partitions", lambda: 0 < sum(
                len(m.consumer.stats.partitions) for m in (a, b)) < PARTITIONS)
            publish_chunk(kafka_bootstrap, topic, events[:half])

            def killed_has_stored() -> bool:
                theirs = set(range(PARTITIONS)) - {
                    p for m in (a, b) for _, p in m.consumer.stats.partitions}
                return any(o is not None and o.partition in theirs
                           for _, _, o in store.since(0, 10**7))

            wait_for("the subprocess stored events", killed_has_stored)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        publish_chunk(kafka_bootstrap, topic, events[half:])
        wait_for("a and b own everything and caught up",
                 lambda: group_settled([a, b], store, len(events)))
        a.halt()
        b.halt()
        ids = stored_ids(store)
        assert len(ids) == len(set(ids)) and sorted(ids) == sorted(e.event_id for e in events)
        check_live_union([a, b], store, "onboarding")
    finally:
        for m in (a, b):
            m.stop.set()
        for m in (a, b):
            m.thread.join(30)
            m.close()
        store.close()
