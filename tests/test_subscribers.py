"""The subscriber contract: off the poll loop, in store order, each event once, failures retried.

These tests run the consumer's loop on an in-memory message source (standing in for Kafka: the
dispatcher's logic is what is tested here) and a real SQLite store; tests/test_live_kafka.py
runs the same contract on the real broker.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from subscribers_support import Recorder

from ingest.consumer import BatchReport, Consumer, ConsumerOptions
from ingest.dispatcher import Dispatcher
from ingest.publish import encode
from ingest.simulate import simulate
from ingest.subscribers import Backoff, Subscription, subscription
from ingest.transport import Message
from schemas.decode import SourceSpec
from schemas.event import CaseEvent
from schemas.frame import Coordinates
from storage import SQLiteStore

TOPIC = "onboarding.events"


@dataclass(frozen=True)
class Msg:
    """A Kafka record as the consumer sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class ListSource:
    """An in-memory Source: hands out its messages in batches, each poll taking ``delay_s``."""

    def __init__(self, messages: Sequence[Msg], delay_s: float = 0.0) -> None:
        self.pending: deque[Message] = deque(messages)
        self.delay_s = delay_s
        self.commits: list[float] = []  # monotonic time of each commit
        self.committed: dict[tuple[str, int], int] = {}  # the next offset per partition

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        time.sleep(self.delay_s if self.pending else min(timeout_s, 0.01))
        return [self.pending.popleft() for _ in range(min(max_records, len(self.pending)))]

    def commit(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        self.commits.append(time.monotonic())
        self.committed.update(next_offsets)

    def assigned(self) -> bool:
        return True

    def lag(self) -> int:
        return len(self.pending)

    def close(self) -> None:
        pass


class NoDeadLetters:
    """A Sink for runs that must not dead-letter anything."""

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: Sequence[tuple[str, bytes | None]] = ()) -> None:
        raise AssertionError(f"unexpected dead letter to {topic}")

    def flush(self, timeout_s: float = 60.0) -> None:
        pass

    def close(self) -> None:
        pass


def messages(cases: int = 40, seed: int = 1) -> list[Msg]:
    """Simulated onboarding events as messages on three partitions, plus 20 re-sent ones."""
    events = simulate("onboarding", cases, seed=seed).events
    out = []
    for i, e in enumerate([*events, *events[:20]]):
        out.append(Msg(TOPIC, i % 3, i // 3, e.case_id.encode(), encode(e)))
    return out


def stored_ids(store: SQLiteStore) -> list[str]:
    """The store's event ids in arrival (seq) order."""
    return [e.event_id for _, e, _ in store.since(0, 1_000_000)]


def consumer(source: ListSource, store: SQLiteStore, subs: Sequence[Subscription],
             batch_size: int = 25, **options: float) -> Consumer:
    """A consumer that commits after every batch (``source.commits`` then shows its progress)."""
    return Consumer(source, NoDeadLetters(), store, {TOPIC: SourceSpec(TOPIC, "onboarding")},
                    subs, options=ConsumerOptions(batch_size=batch_size, poll_timeout_s=0.01,
                                                  **{"commit_interval_s": 0.0, **options}))


def test_offsets_are_committed_at_most_every_interval_and_all_once_caught_up(
        tmp_path: Path) -> None:
    """While busy, stored batches' offsets are committed at most every commit_interval_s (a
    crash re-reads what was stored since); caught up, every partition's offset is committed."""
    store = SQLiteStore(tmp_path / "s.db")
    sent = messages()
    source = ListSource(sent)
    stats = consumer(source, store, [], commit_interval_s=3600.0).run(exit_when_idle_s=0.05)
    assert stats.batches == -(-len(sent) // 25) and stats.stored == 292
    assert len(source.commits) == 2  # the first batch's, then all of them once caught up
    ends = {(m.topic, m.partition): m.offset + 1 for m in sent}
    assert source.committed == ends


def test_failing_subscriber_sees_every_event_once_in_order_while_ingest_goes_on(
        tmp_path: Path) -> None:
    """A subscriber raising on its 2nd and 3rd call gets every stored event exactly once, in
    store order, after retries (partly handed over, partly read back from the store once its
    bounded queue overflowed); ingest kept committing while it failed and finished before it
    recovered; each failure is logged with the subscriber's name, the error and what is pending."""
    store = SQLiteStore(tmp_path / "s.db")
    source = ListSource(messages(), delay_s=0.05)
    flaky = Recorder(fail_on={2, 3})
    run = consumer(source, store, [Subscription("flaky", flaky, batch_limit=30,
                                                retry=Backoff(0.5, 2.0))])
    with structlog.testing.capture_logs() as logged:
        stats = run.run(exit_when_idle_s=0.05)

    assert stats.stored == 292 and stats.duplicates == 20
    assert flaky.ids == stored_ids(store) and len(set(flaky.ids)) == 292
    assert flaky.recovered_at is not None and len(flaky.failed_at) == 2
    during = [t for t in source.commits if flaky.failed_at[0] < t < flaky.recovered_at]
    assert len(during) >= 3, "the poll loop stopped committing while the subscriber failed"
    assert source.commits[-1] < flaky.recovered_at, "ingest waited for the subscriber"
    sub = stats.subscribers["flaky"]
    assert (sub.failures, sub.failing, sub.handled, sub.lag) == (2, 0, 292, 0)
    assert 0 < sub.read_back < 292 and max(flaky.sizes) <= 30
    assert sub.last_error == "RuntimeError: downstream refused batch 3" and stats.drained
    failures = [e for e in logged if e["event"].startswith("subscriber failed")]
    assert len(failures) == 2 and failures[0]["log_level"] == "warning"
    assert failures[0]["subscriber"] == "flaky" and failures[0]["pending"] > 0
    assert failures[0]["error"] == "RuntimeError: downstream refused batch 2"
    store.close()


def test_slow_subscriber_does_not_slow_the_commit_loop(tmp_path: Path) -> None:
    """A subscriber taking 1 s per call: all 13 batches are committed within its first call,
    it then catches up in batches of at most its limit, handed over from the commits (nothing
    read back from the store), and the delay is measured."""
    store = SQLiteStore(tmp_path / "s.db")
    source = ListSource(messages())
    slow = Recorder(sleep_s=1.0)
    run = consumer(source, store, [Subscription("slow", slow, batch_limit=200)])
    stats = run.run(exit_when_idle_s=0.05)

    assert stats.batches == 13 and stats.busy_since is not None and stats.busy_until is not None
    assert stats.busy_until - stats.busy_since < 1.0
    assert stats.seconds["dispatch"] < 0.2
    assert slow.ids == stored_ids(store) and max(slow.sizes) <= 200
    assert stats.subscribers["slow"].read_back == 0
    assert stats.delivery_max_s >= 1.0 and stats.subscribers["slow"].busy_s >= 1.0
    store.close()


def test_durable_subscriber_resumes_after_its_mark_and_others_start_where_told(
        tmp_path: Path) -> None:
    """A durable subscriber that fails from its 3rd batch on keeps the mark of the last batch
    it handled; a new dispatcher on the same store hands it exactly the rest. A subscriber
    starting at the end sees only events stored after it started."""
    events = simulate("claims", 20, seed=2).events[:100]
    store = SQLiteStore(tmp_path / "s.db")
    store.write(events[:90])
    broken = Recorder(fail_from=3)
    first = Dispatcher(store, [Subscription("rec", broken, durable=True, batch_limit=30,
                                            retry=Backoff(0.01, 0.05))])
    first.start()
    assert not first.drain(stall_timeout_s=0.3)
    first.stop(1.0)
    assert broken.ids == [e.event_id for e in events[:60]]
    assert store.subscriber_mark("rec") == 60

    healthy, late = Recorder(), Recorder()
    second = Dispatcher(store, [Subscription("rec", healthy, durable=True, batch_limit=30),
                                Subscription("late", late, start="end")])
    second.start()
    store.write(events[90:])
    second.notify()
    assert second.drain(stall_timeout_s=5.0)
    assert second.stop(1.0)
    assert healthy.ids == [e.event_id for e in events[60:]]
    assert late.ids == [e.event_id for e in events[90:]]
    assert store.subscriber_mark("rec") == 100 and store.subscriber_mark("late") is None
    assert [(s.name, s.handled, s.lag) for s in second.stats()] == [("rec", 40, 0),
                                                                    ("late", 10, 0)]
    store.close()


def test_another_writer_on_the_same_store_is_seen_in_store_order(tmp_path: Path) -> None:
    """Events another process writes to the same store file, before or right after one of the
    consumer's commits, reach the subscriber too, each once and in store order, though the
    consumer hands over only its own."""
    events = simulate("payments", 10, seed=3).events[:40]
    ours, theirs = SQLiteStore(tmp_path / "s.db"), SQLiteStore(tmp_path / "s.db")
    rec = Recorder()
    dispatcher = Dispatcher(ours, [Subscription("rec", rec, batch_limit=7)])
    dispatcher.start()
    for mine, other in ((events[0:10], events[10:15]), (events[15:25], events[25:30]),
                        (events[30:40], [])):
        theirs.write(other[:2])
        ours.write(mine)
        theirs.write(other[2:])  # after our commit, before we tell the subscribers
        dispatcher.notify(events=mine)
    assert dispatcher.drain(stall_timeout_s=5.0) and dispatcher.stop(1.0)
    assert rec.ids == stored_ids(ours) and sorted(rec.ids) == sorted(e.event_id for e in events)
    ours.close()
    theirs.close()


def test_stop_returns_within_its_timeout_when_a_subscriber_hangs(tmp_path: Path) -> None:
    """Stopping the consumer while a subscriber hangs in a call returns after the stop timeout,
    with every event stored and the subscriber reported as behind."""
    store = SQLiteStore(tmp_path / "s.db")
    release = threading.Event()

    def hangs(events: Sequence[CaseEvent], origins: Sequence[Coordinates | None]) -> None:
        release.wait(10)

    stop = threading.Event()
    source = ListSource(messages())
    run = consumer(source, store, [Subscription("hangs", hangs)], stop_timeout_s=0.3)
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    stats = run.run(stop)
    took = time.monotonic() - t0
    release.set()
    assert took < 2.0
    assert stats.stored == 292 and not stats.drained
    assert stats.subscribers["hangs"].handled == 0 and stats.subscribers["hangs"].lag == 292
    store.close()


def test_subscriptions_are_named_and_names_are_unique(tmp_path: Path) -> None:
    """Plain callables are named after themselves (made unique); two subscriptions with one
    name, an empty name or a batch limit below 1 are refused."""
    def live_map(events: Sequence[CaseEvent], origins: Sequence[Coordinates | None]) -> None:
        pass

    taken = {"live_map"}
    assert subscription(live_map, taken).name == "live_map#2"
    assert subscription(Recorder(), set()).name == "Recorder"
    store = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(ValueError, match="two subscriptions are named 'a'"):
        Dispatcher(store, [Subscription("a", live_map), Subscription("a", Recorder())])
    with pytest.raises(ValueError, match="needs a name"):
        Subscription(" ", live_map)
    with pytest.raises(ValueError, match="batch_limit"):
        Subscription("a", live_map, batch_limit=0)
    store.close()


def test_backoff_doubles_up_to_its_cap() -> None:
    """Retry delays double from the initial one and stop at the cap."""
    backoff = Backoff(0.5, 4.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_failure_logs_and_stats_never_show_a_webhook_secret(tmp_path: Path) -> None:
    """A subscriber whose error names its webhook URL (as HTTP clients' errors do) is logged
    and reported with the URL cut to its host: the token in the path never appears."""
    store = SQLiteStore(tmp_path / "s.db")
    store.write(simulate("claims", 2, seed=1).events)
    secret = "https://hooks.slack.com/services/T0AB/B0CD/s3cr3tT0k3n?x=1"

    def webhook(events: Sequence[CaseEvent], origins: Sequence[Coordinates | None]) -> None:
        raise RuntimeError(f"Server error '503 Service Unavailable' for url '{secret}'")

    dispatcher = Dispatcher(store, [Subscription("chat", webhook, retry=Backoff(0.01, 0.02))])
    with structlog.testing.capture_logs() as logged:
        dispatcher.start()
        assert not dispatcher.drain(stall_timeout_s=0.2)
        dispatcher.stop(1.0)
    failures = [e for e in logged if e["event"].startswith("subscriber failed")]
    assert len(failures) >= 2 and "traceback" in failures[0]
    text = " ".join(str(v) for e in logged for v in e.values())
    assert "s3cr3tT0k3n" not in text and "hooks.slack.com/<redacted>" in text
    [stats] = dispatcher.stats()
    assert stats.last_error is not None and "s3cr3tT0k3n" not in stats.last_error
    store.close()


class UnassignedSource(ListSource):
    """A group member that got no partitions: nothing to poll, the group's lag to report."""

    def assigned(self) -> bool:
        return False

    def lags(self) -> dict[tuple[str, int], int]:
        return {(TOPIC, 0): 7, (TOPIC, 1): 0}


def test_a_member_without_partitions_keeps_reporting_the_lag(tmp_path: Path) -> None:
    """A consumer with no partitions assigned still reports the lag per partition to its
    observer (at its lag interval), so readiness does not take an idle member for a stalled one."""
    store = SQLiteStore(tmp_path / "s.db")
    reports: list[BatchReport] = []
    stop = threading.Event()
    worker = Consumer(UnassignedSource([]), NoDeadLetters(), store,
                      {TOPIC: SourceSpec(TOPIC, "onboarding")},
                      options=ConsumerOptions(lag_interval_s=0.05), on_batch=reports.append)
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    time.sleep(0.6)
    stop.set()
    runner.join(10)
    store.close()
    assert len(reports) >= 3
    assert all(r.lags == {(TOPIC, 0): 7, (TOPIC, 1): 0} and r.seconds is None for r in reports)
