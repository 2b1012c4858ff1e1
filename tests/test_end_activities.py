"""End activities learned once from finished history, kept, and changed only on strong
evidence (alerts/ends.py): pure, on crafted events."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import polars as pl

from alerts.ends import MIN_FINISHED, decide, learn
from alerts.registry import ProcessDefinition
from backlight.alerting import with_learned_ends
from mining.frame import frame_from_rows, prepare

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def process(paths: list[tuple[list[str], int]], first_day: int = 0, days: int = 60,
            step: timedelta = timedelta(hours=3)) -> list[dict[str, object]]:
    """Cases following ``paths`` (path, count), started one a day round-robin over ``days``
    from ``first_day``, their steps ``step`` apart."""
    rows: list[dict[str, object]] = []
    n = 0
    for p, (path, count) in enumerate(paths):
        for i in range(count):
            start = T0 + timedelta(days=first_day + n % days, minutes=p)
            n += 1
            rows += [{"case_id": f"{first_day}-{'/'.join(path)}-{i}", "activity": a,
                      "timestamp": start + k * step} for k, a in enumerate(path)]
    return rows


def frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return frame_from_rows({**r, "seq": i} for i, r in enumerate(rows))


BASE = [(["Open", "Check", "Approve"], 120), (["Open", "Check", "Decline"], 60),
        (["Open", "Check", "Ask", "Check", "Approve"], 40)]


def test_learned_once_from_enough_finished_cases_and_kept() -> None:
    """The first learning with enough finished cases is kept, saying from how many and the
    share each ends; the same evidence later changes nothing; too little history keeps nothing."""
    few = learn(frame(process(BASE)[:40]), now=T0 + timedelta(days=90))
    assert few.finished < MIN_FINISHED and decide("claims", None, few) is None
    learning = learn(frame(process(BASE)), now=T0 + timedelta(days=90))
    kept = decide("claims", None, learning)
    assert kept is not None and kept.version == 1
    assert kept.activities == ("Approve", "Decline") and kept.cases == 220
    assert kept.shares == {"Approve": round(160 / 220, 4), "Decline": round(60 / 220, 4)}
    assert kept.reason == "learned from 220 finished cases"
    assert decide("claims", kept, learn(frame(process(BASE)), now=T0 + timedelta(days=120))) is None


def test_a_new_outcome_ending_many_cases_is_added_with_its_reason() -> None:
    """A new outcome (Cancel) ending a large share of recent cases that stay ended is added,
    as version 2 with why, and so is one always last in a dozen cases; one ending a handful
    is not."""
    learning = learn(frame(process(BASE)), now=T0 + timedelta(days=90))
    kept = decide("claims", None, learning)
    assert kept is not None
    rare = [*BASE, (["Open", "Cancel"], 4)]
    assert decide("claims", kept, learn(frame(process(rare)), now=T0 + timedelta(days=90))) is None
    many = [*BASE, (["Open", "Check", "Cancel"], 50)]
    changed = decide("claims", kept, learn(frame(process(many)), now=T0 + timedelta(days=90)))
    assert changed is not None and changed.version == 2
    assert changed.activities == ("Approve", "Decline", "Cancel")
    assert changed.reason.startswith("Cancel added: it ends 50 of 270 finished cases (19%)")
    own_end = [*BASE, (["Open", "Print X"], 12)]  # too few for a large share, but always last
    printed = decide("claims", kept, learn(frame(process(own_end)), now=T0 + timedelta(days=90)))
    assert printed is not None and printed.activities == ("Approve", "Decline", "Print X")


def test_a_kept_end_where_cases_go_on_after_resting_is_removed() -> None:
    """Kept ends stay unless most cases resting at one go on afterwards: Check, kept by
    mistake, is removed once 40 cases rest there a month (longer than 99 % of all waits) and
    then go on."""
    busy = [(path, 10 * count) for path, count in BASE]
    learning = learn(frame(process(busy)), now=T0 + timedelta(days=90))
    kept = decide("claims", None, learning)
    assert kept is not None
    wrong = dataclasses.replace(kept, activities=(*kept.activities, "Check"))
    rows = process(busy)
    for i in range(40):
        start = T0 + timedelta(days=i)
        rows += [{"case_id": f"slow-{i}", "activity": a, "timestamp": start + dt}
                 for a, dt in (("Open", timedelta(0)), ("Check", timedelta(hours=1)),
                               ("Approve", timedelta(days=30)))]
    changed = decide("claims", wrong, learn(frame(rows), now=T0 + timedelta(days=120)))
    assert changed is not None and "Check" not in changed.activities
    assert changed.reason.startswith("Check removed: ")


def test_cases_still_running_and_stuck_cases_teach_no_ends() -> None:
    """Cases whose last event is recent are not finished; a step where a few cases stop for
    good but most go on is no end."""
    rows = process(BASE) + process([(["Open", "Check"], 20)], first_day=88, days=1)
    rows += process([(["Open", "Ask"], 8)])
    learning = learn(frame(rows), now=T0 + timedelta(days=88, hours=4))
    assert learning.finished == 228
    assert learning.chosen == ("Approve", "Decline")
    ask = learning.of("Ask")
    assert ask is not None and ask.ends == 8 and ask.terminal < 0.4


def test_an_end_of_one_of_two_parallel_branches_is_an_end() -> None:
    """Two branches done in either order (Notify, Decide): the case ends at whichever comes
    last, so Notify is an end although Decide follows it in 70 % of cases; Send, which a later
    step (Pay) always follows, is none though 30 cases stop there."""
    paths = [(["Open", "Notify", "Decide"], 140), (["Open", "Decide", "Notify"], 60),
             (["Open", "Send", "Pay"], 100), (["Open", "Send"], 30)]
    learning = learn(frame(process(paths)), now=T0 + timedelta(days=90))
    assert set(learning.chosen) == {"Decide", "Notify", "Pay"}
    notify, send = learning.of("Notify"), learning.of("Send")
    assert notify is not None and notify.ends == 60 and notify.terminal == 1.0
    assert send is not None and send.ends == 30 and send.terminal < 0.4


def hold(base: list[tuple[list[str], int]]) -> list[dict[str, object]]:
    """``base``'s cases, 17 stopping at Hold and 3 going on from it after a month."""
    rows = process([*base, (["Open", "Hold"], 17)])
    for i in range(3):
        start = T0 + timedelta(days=i)
        rows += [{"case_id": f"held-{i}", "activity": a, "timestamp": start + dt}
                 for a, dt in (("Open", timedelta(0)), ("Hold", timedelta(hours=1)),
                               ("Approve", timedelta(days=30)))]
    return rows


def test_an_end_the_rests_cannot_yet_rule_out_is_provisional_and_delays_keeping() -> None:
    """Hold, where 17 cases stayed and 3 of 20 went on after a long rest (0.85, below 0.9 but
    not at 95 %), is no end yet is taken as one while nothing is kept, and nothing is kept
    until there are 400 finished cases; then what qualifies is kept, without Hold."""
    learning = learn(frame(hold(BASE)), now=T0 + timedelta(days=120))
    assert learning.finished == 240 and learning.undecided == ("Hold",)
    assert "Hold" not in learning.chosen and "Hold" in learning.provisional
    assert not learning.enough and decide("claims", None, learning) is None
    more = learn(frame(hold([(p, 2 * n) for p, n in BASE])), now=T0 + timedelta(days=120))
    kept = decide("claims", None, more)
    assert more.undecided == ("Hold",) and kept is not None
    assert kept.activities == ("Approve", "Decline")


def test_too_few_finished_cases_in_the_window_are_learned_from_the_whole_history() -> None:
    """A round whose events hold too few finished cases, nothing kept, learns the ends from
    the process's whole history where it is given, and keeps them."""
    rows = process(BASE)
    window = frame([r for r in rows if str(r["case_id"]).endswith(("-0", "-1"))])
    whole = frame(rows)
    now = T0 + timedelta(days=90)
    definition = ProcessDefinition("claims")
    _, none, _ = with_learned_ends(definition, prepare(window), now, None)
    assert none is None
    learned, keep, _ = with_learned_ends(definition, prepare(window), now, None,
                                             lambda: prepare(whole))
    assert keep is not None and keep.cases == 220
    assert learned.end_activities == ("Approve", "Decline")
