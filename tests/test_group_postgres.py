"""Scale-out, end to end: three consumer processes share a 6-partition topic and a PostgreSQL
store while BPIC 2012 is replayed; one is killed with kill -9 and one added mid-replay. The
store then holds exactly the produced set, `backlight mine` on it equals pm4py on the log file,
and the live maps of the consumers left sum to pm4py's DFG of the store."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import mine_oracle as oracle
import pytest
from conftest import SHARED_DATA, popen_backlight, shared_file
from group_support import (
    PARTITIONS,
    Member,
    assignment,
    check_live_sum,
    committed_offsets,
    group_config,
    owns_everything,
    read_back,
    stored_from,
    stored_total,
    wait_until,
)
from pg import fresh_database
from shared_logs_support import shared_events

from backlight.config import load
from ingest.consumer import dead_letter_topic
from ingest.transport import ensure_topics
from storage import open_store

LOG = "bpic2012.xes.gz"
pytestmark = [
    pytest.mark.kafka, pytest.mark.shared_data,
    pytest.mark.skipif(not (SHARED_DATA / "logs" / LOG).is_file(),  # before starting a broker
                       reason=f"../shared/data/logs/{LOG} is absent: the public event logs live "
                              "beside the repo (see ../shared/data/README.md)"),
]
PROCESS = oracle.LOGS[LOG]  # the name the mine oracle expects
BATCH = 1000
LIVE = "[live]\nidle_horizon_days = 3650\n"  # BPIC is from 2011-12: no case forgotten as idle
MINUTES = 60.0  # deadlines only prove that nothing hangs (a loaded 2-core machine)


def test_three_consumers_one_killed_one_added_store_bpic_exactly_once(
        kafka_bootstrap: str, postgres_url: str, tmp_path: Path, unique: str) -> None:
    """BPIC 2012 replayed to three consumers (two `backlight consume` processes and one in
    the test's process) sharing PostgreSQL; one process is kill -9'd after storing events of
    its partitions and a fourth consumer joins, both while the replay runs. Afterwards each
    produced event is stored once, the group's committed offsets are the topic's ends,
    `mine` equals pm4py on the log file, and the in-process consumers' live maps, owning all
    partitions once the last process left, sum to pm4py's DFG of the store."""
    log = shared_file(f"logs/{LOG}")
    topic, group = f"bpic.{unique}", f"g-{unique}"
    ensure_topics(kafka_bootstrap, [topic, dead_letter_topic(topic)], partitions=PARTITIONS)
    url = fresh_database(postgres_url)
    cfg = {name: group_config(tmp_path / f"{name}.toml", kafka_bootstrap, url, topic, PROCESS,
                              group, name, BATCH, extra=LIVE) for name in ("victim", "steady")}
    settings = load(cfg["steady"])
    store = open_store(url)
    members: list[Member] = []
    try:
        with contextlib.ExitStack() as procs:
            consume = ("--log-level", "WARNING", "consume", "--config")
            victim = procs.enter_context(popen_backlight(*consume, str(cfg["victim"])))
            steady = procs.enter_context(popen_backlight(*consume, str(cfg["steady"])))
            members.append(Member(settings, "a", BATCH))

            def stable(names: set[str]) -> bool:
                """The group is exactly these members, each applying its partitions."""
                now = assignment(kafka_bootstrap, group)
                return (now is not None and set(now) == names and all(now.values())
                        and all(m.consumer.stats.partitions == {(topic, p) for p in now[m.name]}
                                for m in members))

            wait_until("three consumers share the partitions",
                       lambda: stable({"victim", "steady", "a"}), 5 * MINUTES, 0.5)
            doomed = (assignment(kafka_bootstrap, group) or {})["victim"]
            replay = procs.enter_context(popen_backlight(
                "replay", str(log), "--process", PROCESS, "--topic", topic,
                "--config", str(cfg["steady"])))
            wait_until("the victim stored events of its partitions",
                       lambda: stored_from(url, topic, doomed), 5 * MINUTES, 0.2)
            # Held (SIGSTOP: for the broker, a slow producer) while one consumer is killed and
            # one added, so both happen mid-replay however fast or slow the machine is.
            assert replay.poll() is None, "the replay ended before the victim stored events"
            replay.send_signal(signal.SIGSTOP)
            os.kill(victim.pid, signal.SIGKILL)
            assert victim.wait(timeout=MINUTES) == -signal.SIGKILL
            members.append(Member(settings, "b", BATCH))
            wait_until("the victim's session expired and b joined",
                       lambda: stable({"steady", "a", "b"}), 5 * MINUTES, 0.5)
            replay.send_signal(signal.SIGCONT)
            produced = [e.event_id for e in shared_events(LOG, PROCESS)]  # as replay reads them
            out, err = replay.communicate(timeout=20 * MINUTES)
            assert replay.returncode == 0, err
            assert f"published {len(produced)} events" in out
            wait_until("every event stored", lambda: stored_total(store) >= len(produced),
                       10 * MINUTES, 1.0)
            steady.send_signal(signal.SIGTERM)  # leaves the group: a and b take its partitions
            assert steady.wait(timeout=3 * MINUTES) == 0, steady.communicate()[1]
        wait_until("a and b own every partition and their live maps caught up",
                   lambda: owns_everything(members, PARTITIONS, store.last_seq()), 5 * MINUTES,
                   0.5)
        stats = [m.halt() for m in members]

        ids, ends = read_back(store)
        assert len(ids) == len(set(ids)) == len(produced)
        assert set(ids) == set(produced)
        assert committed_offsets(settings, topic) == ends
        assert sum(s.dead_letters for s in stats) == 0
        # b got partitions that others had stored, and built its live map from the store
        assert stats[1].subscribers["live-map"].handover_read > 0
        check_live_sum(members, store, PROCESS)
        oracle.assert_mine_equals_pm4py(cfg["steady"], LOG)
    finally:
        for m in members:
            m.stop.set()
        for m in members:
            m.thread.join(MINUTES)
            m.close()
        store.close()
