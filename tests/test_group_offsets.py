"""The offsets a group member stored and has not committed, and what a revoke commits: the
bookkeeping both Kafka sources share (``ingest.group_offsets``), without a broker."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from ingest.group_offsets import GroupOffsets, Handled, Rebalance

log = structlog.stdlib.get_logger("tests.group_offsets")
A0, A1, B0 = ("a", 0), ("a", 1), ("b", 0)


def test_handled_offsets_only_move_forward_and_a_commit_forgets_only_what_it_covered() -> None:
    """A batch handled after an older one of the same partition keeps the later offset; a
    commit answered after a newer batch was handled does not forget the newer offset."""
    handled = Handled()
    handled.add({A0: 10, A1: 5})
    handled.add({A0: 7})
    assert handled.snapshot() == {A0: 10, A1: 5}
    handled.add({A0: 12})
    handled.committed({A0: 10, A1: 5})
    assert handled.snapshot() == {A0: 12}


def test_taking_all_offsets_empties_the_book() -> None:
    """``take()`` returns every partition's offset once; a second take finds nothing."""
    handled = Handled()
    handled.add({A0: 3, B0: 4})
    assert handled.take() == {A0: 3, B0: 4}
    assert handled.take() == {}


def test_a_commit_leaves_out_partitions_no_longer_owned() -> None:
    """Offsets of a partition this member no longer owns are neither committed nor kept;
    a refused commit of an owned one goes with the next commit."""
    group = GroupOffsets(log)
    assert group.to_commit({A0: 4, A1: 9}, lambda: frozenset({A0})) == {A0: 4}
    assert group.to_commit({B0: 2}, lambda: frozenset({A0, B0})) == {A0: 4, B0: 2}
    group.committed({A0: 4, B0: 2})
    assert group.to_commit({A0: 6}, lambda: frozenset({A0, A1, B0})) == {A0: 6}


def test_an_empty_commit_does_not_ask_for_the_assignment() -> None:
    """Nothing to commit: the source's assignment (a client call) is not looked up."""
    group = GroupOffsets(log)

    def owned() -> frozenset[tuple[str, int]]:
        raise AssertionError("the assignment was looked up")

    assert group.to_commit({}, owned) == {}


def test_a_revoke_runs_the_handover_first_and_commits_the_revoked_partitions_offsets() -> None:
    """The hand-over records the batch it waited for; the revoke then returns the handled
    offsets of the revoked partitions only, and the change reaches the poll loop in order."""
    group = GroupOffsets(log)
    group.assigned(frozenset({A0, A1}))
    group.handled({A1: 3})
    group.set_handover(lambda: group.handled({A0: 8}))
    assert group.revoke(frozenset({A0}), lost=False) == {A0: 8}
    assert group.rebalances() == [Rebalance("assigned", frozenset({A0, A1})),
                                  Rebalance("revoked", frozenset({A0}))]
    assert group.rebalances() == []
    assert group.to_commit({A1: 3}, lambda: frozenset({A1})) == {A1: 3}


def test_lost_partitions_commit_nothing_and_say_their_next_owner_re_reads_them() -> None:
    """Partitions lost with offsets not committed: nothing to commit (no longer possible),
    one warning under the source's logger, and the offsets are forgotten."""
    group = GroupOffsets(log)
    group.handled({A0: 5})
    with capture_logs() as logged:
        assert group.revoke(frozenset({A0}), lost=True) == {}
    assert [(e["log_level"], e["event"]) for e in logged] == [
        ("warning", "partitions lost before their offsets were committed; the next owner "
                    "re-reads them")]
    assert group.rebalances() == [Rebalance("lost", frozenset({A0}))]
    assert group.to_commit({B0: 1}, lambda: frozenset({A0, B0})) == {B0: 1}


def test_a_failed_commit_is_warned_once_per_kind_a_minute() -> None:
    """Repeated failures of one kind warn once; another kind warns on its own, a refusal in
    a rebalance saying its offsets are kept for the hand-over."""
    group = GroupOffsets(log)
    with capture_logs() as logged:
        for _ in range(3):
            group.commit_failed("timeout", False, 2, "KafkaTimeoutError()")
        group.commit_failed("rebalance", True, 1, "CommitFailedError()")
    assert logged == [
        {"event": "offset commit failed; kept for the next commit", "log_level": "warning",
         "partitions": 2, "error": "KafkaTimeoutError()"},
        {"event": "offset commit refused during a rebalance; kept for the handover",
         "log_level": "warning", "partitions": 1},
    ]
