"""End activities learned on the public real logs (../shared/data): outcomes are ends, the
learned set is kept as the log grows, and no case whose last event is an end is ever stuck."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from real_logs_support import real

from alerts.context import RuleContext
from alerts.ends import decide, learn
from alerts.registry import ProcessDefinition
from alerts.rules.stuck import ABANDONED, stuck
from mining.frame import prepare


def test_bpic2012_outcomes_declined_and_cancelled_are_ends() -> None:
    """BPIC 2012: the declined and cancelled applications end their cases (A_DECLINED,
    A_CANCELLED, though a work item is closed after them), as does the validation approved
    loans end with; steps where cases wait weeks and go on (W_Completeren aanvraag,
    W_Nabellen offertes) are not ends."""
    learned = learn(real("loans"))
    assert {"A_DECLINED", "A_CANCELLED", "W_Valideren aanvraag"} <= set(learned.chosen)
    assert not {"W_Completeren aanvraag", "W_Nabellen offertes"} & set(learned.chosen)
    declined = learned.of("A_DECLINED")
    assert declined is not None and declined.terminal > 0.99 and declined.stay == 1.0


@pytest.mark.parametrize(("process", "ends", "not_ends"), [
    ("helpdesk", {"Closed"}, {"Resolve ticket", "Wait"}),
    ("fines", {"Payment", "Send for Credit Collection"}, {"Send Fine"}),
    ("receipt", {"T10 Determine necessity to stop indication",
                 "T05 Print and send confirmation of receipt"}, {"Confirmation of receipt"}),
])
def test_the_other_real_logs_learn_their_ends(process: str, ends: set[str],
                                               not_ends: set[str]) -> None:
    """Helpdesk ends at Closed; fines at Payment or credit collection, not at Send Fine where
    cases wait months for the next step; receipt at T10 and T05."""
    learned = set(learn(real(process)).chosen)
    assert ends <= learned and not not_ends & learned


def test_bpic2012_kept_ends_hold_and_no_finished_case_is_stuck() -> None:
    """Rounds 8, 12, 16 and 23 weeks into BPIC 2012: the ends learned at the first are kept
    unchanged, and no case listed as stuck (or abandoned) has an end activity as its last
    event; the declined and cancelled applications are never listed."""
    frame = real("loans")
    start = frame["timestamp"].min()
    assert start is not None
    kept = None
    for weeks in (8, 12, 16, 23):
        now = start + timedelta(weeks=weeks)  # type: ignore[operator]
        events = prepare(frame.filter(pl.col("timestamp") <= now))
        learning = learn(events, now)
        change = decide("loans", kept, learning)
        assert (change is not None) == (kept is None), change
        kept = change or kept
        assert kept is not None and {"A_DECLINED", "A_CANCELLED"} <= set(kept.activities)
        found = stuck(RuleContext(ProcessDefinition("loans", end_activities=kept.activities),
                                  events, now))
        last = dict(events.df.group_by("case_id").agg(pl.col("activity").last()).iter_rows())
        listed = [c for f in found for c in f.cases]
        assert any(f.subject != ABANDONED for f in found), weeks  # stuck cases there are
        assert not [c for c in listed if last[c] in kept.activities], weeks
