"""The process registry: SLAs, review dates, owners and end activities learned from data."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

import polars as pl
import pytest

from alerts.calendar import CalendarSettings, WorkCalendar
from alerts.duration import Duration
from alerts.ends import learn
from alerts.errors import AlertConfigError
from alerts.registry import (
    add_months,
    build_definition,
    effective_review,
    learn_end_activities,
    months_between,
    normalise_owners,
    parse_sla,
    review_due,
)
from ingest.simulate import Anomalies, StuckCases, simulate
from mining.frame import empty_frame, frame_from_rows
from schemas.alerts import Review

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cases_frame(cases: Iterable[tuple[str, list[str], datetime]], gap: timedelta = timedelta(hours=2)
                ) -> pl.DataFrame:
    """An event frame: each case's activities one `gap` apart from its start."""
    rows: list[dict[str, object]] = []
    for case_id, path, start in cases:
        for i, activity in enumerate(path):
            rows.append({"case_id": case_id, "activity": activity, "timestamp": start + i * gap,
                         "seq": len(rows)})
    return frame_from_rows(rows)


def simulated_frame(process: str, seed: int, anomalies: Anomalies) -> pl.DataFrame:
    """The simulator's events of one process as an event frame."""
    sim = simulate(process, 300, seed=seed, anomalies=anomalies)
    return frame_from_rows(
        {"case_id": e.case_id, "activity": e.activity, "seq": i, "lifecycle": e.lifecycle,
         "timestamp": EPOCH + timedelta(microseconds=e.time_us), "resource": e.resource,
         "team": e.team} for i, e in enumerate(sim.events))


def test_sla_is_a_typed_duration() -> None:
    """An SLA in business or wall time becomes a Duration; a bad or zero one is refused."""
    assert parse_sla("5 business days") == Duration(5, "business_days")
    assert parse_sla("36 hours") == Duration(36, "hours")
    assert parse_sla(Duration(2, "business_hours")) == Duration(2, "business_hours")
    with pytest.raises(AlertConfigError, match="must be positive"):
        parse_sla("0 business days")
    with pytest.raises(AlertConfigError, match="must be positive"):
        parse_sla(Duration(-1, "hours"))
    with pytest.raises(AlertConfigError, match="not a duration"):
        parse_sla("soon")


def test_calendar_month_arithmetic() -> None:
    """Months move the calendar month and clamp to its last day; whole months are counted."""
    assert add_months(date(2025, 3, 1), 18) == date(2026, 9, 1)
    assert add_months(date(2025, 8, 31), 6) == date(2026, 2, 28)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2026, 1, 15), -2) == date(2025, 11, 15)
    assert review_due(date(2025, 3, 1), 18) == date(2026, 9, 1)
    assert months_between(date(2025, 3, 1), date(2026, 8, 31)) == 17
    assert months_between(date(2025, 3, 1), date(2026, 9, 1)) == 18
    assert months_between(date(2025, 3, 31), date(2025, 4, 30)) == 1
    assert months_between(date(2026, 9, 1), date(2025, 3, 1)) == -18


def test_latest_review_wins_over_the_config_date() -> None:
    """The latest recorded review counts unless the config's date is later."""
    old = Review(process="p", by="bob", at=datetime(2025, 5, 1, 10, tzinfo=UTC))
    new = Review(process="p", by="carol", at=datetime(2026, 6, 1, 10, tzinfo=UTC))
    assert effective_review(date(2025, 3, 1), [], config_by="alice") == (date(2025, 3, 1), "alice")
    assert effective_review(date(2025, 3, 1), [new, old]) == (date(2026, 6, 1), "carol")
    assert effective_review(date(2026, 1, 1), [old], config_by="alice") == (date(2026, 1, 1), "alice")
    assert effective_review(None, [old]) == (date(2025, 5, 1), "bob")
    assert effective_review(None, []) == (None, None)


def test_review_date_is_taken_in_the_process_time_zone() -> None:
    """A review at 23:30 UTC on 1 March is a review of 2 March in Amsterdam."""
    late = Review(process="p", by="bob", at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    assert effective_review(None, [late]) == (date(2026, 3, 1), "bob")
    assert effective_review(None, [late], timezone="Europe/Amsterdam") == (date(2026, 3, 2), "bob")


def test_owners_are_normalised() -> None:
    """Owners from a list or a comma-separated string, blanks and repeats dropped."""
    assert normalise_owners(None) == ()
    assert normalise_owners("") == ()
    assert normalise_owners("alice") == ("alice",)
    assert normalise_owners("alice, bob; carol") == ("alice", "bob", "carol")
    assert normalise_owners(["alice", " ", "Alice", "bob"]) == ("alice", "bob")
    assert normalise_owners("Research and Development") == ("Research and Development",)


def test_end_activities_learned_ignore_stuck_and_open_cases() -> None:
    """Finished cases end at Close (most) or Withdraw (rarely, always last); stuck cases
    stopping at Request and cases still running are not taken as ends."""
    done = [(f"c{i}", ["Open", "Request", "Check", "Close"], T0 + timedelta(days=i % 30))
            for i in range(60)]
    withdrawn = [(f"w{i}", ["Open", "Withdraw"], T0 + timedelta(days=i)) for i in range(3)]
    stuck = [(f"s{i}", ["Open", "Request"], T0 + timedelta(days=i)) for i in range(8)]
    running = [(f"r{i}", ["Open", "Check"], T0 + timedelta(days=40)) for i in range(20)]
    frame = cases_frame(done + withdrawn + stuck + running)
    assert learn_end_activities(frame) == ("Close", "Withdraw")
    assert learn_end_activities(frame, now=T0 + timedelta(days=41)) == ("Close", "Withdraw")


def test_outcomes_that_end_most_cases_are_ends_though_bookkeeping_follows() -> None:
    """A Decline ends its case although its work item is closed minutes later in most cases
    (last event within the hour after it): Decline and the closing step are ends; Escalate,
    where most cases go on a week later, is not, though a few cases rest there for good."""
    closed = [(f"d{i}", ["Open", "Check", "Decline", "Close item"], T0 + timedelta(days=i % 40))
              for i in range(30)]
    declined = [(f"e{i}", ["Open", "Check", "Decline"], T0 + timedelta(days=i % 40))
                for i in range(12)]
    approved = [(f"a{i}", ["Open", "Check", "Approve"], T0 + timedelta(days=i % 40))
                for i in range(50)]
    rows = cases_frame(closed + declined + approved, gap=timedelta(minutes=10)).to_dicts()
    for i in range(20):  # escalated: go on a week later
        start = T0 + timedelta(days=i)
        rows += [{"case_id": f"x{i}", "activity": a, "timestamp": start + dt}
                 for a, dt in (("Open", timedelta(0)), ("Escalate", timedelta(hours=1)),
                               ("Approve", timedelta(days=7)))]
    rows += [{"case_id": f"y{i}", "activity": a, "timestamp": T0 + timedelta(hours=h)}
             for i in range(3) for h, a in enumerate(("Open", "Escalate"))]
    frame = frame_from_rows({**r, "seq": n} for n, r in enumerate(rows))
    learned = learn(frame, now=T0 + timedelta(days=120))
    assert learned.chosen == ("Approve", "Close item", "Decline")
    decline = learned.of("Decline")
    assert decline is not None and decline.ends == 12 and decline.terminal == 1.0
    escalate = learned.of("Escalate")
    assert escalate is not None and escalate.ends == 3 and escalate.terminal < 0.2


def test_end_activities_of_no_events_are_none() -> None:
    """No events: nothing to learn."""
    assert learn_end_activities(empty_frame()) == ()


@pytest.mark.parametrize("process", ["onboarding", "payments", "claims"])
def test_end_activities_learned_match_the_simulator(process: str) -> None:
    """On simulated processes with 8% stuck cases, over 3 seeds, the learned end activities
    are exactly the simulator's (ground truth), rare ones included."""
    after = {"onboarding": "Request missing documents", "payments": "Triage",
             "claims": "Assessment"}[process]
    for seed in range(3):
        anomalies = Anomalies(stuck=StuckCases(after, share=0.08))
        truth = simulate(process, 1, seed=seed).ground_truth["end_activities"]
        learned = learn_end_activities(simulated_frame(process, seed, anomalies))
        assert sorted(learned) == sorted(truth), seed


def test_definition_learns_end_activities_when_none_configured() -> None:
    """No end activities in the config: learned from the events and flagged as learned."""
    frame = cases_frame([(f"c{i}", ["Open", "Close"], T0 + timedelta(days=i)) for i in range(20)])
    learned = build_definition("claims", owners=("alice",), events=frame)
    assert learned.end_activities == ("Close",)
    assert learned.end_activities_learned
    configured = build_definition("claims", end_activities=["Pay", "Reject"], events=frame)
    assert configured.end_activities == ("Pay", "Reject")
    assert not configured.end_activities_learned
    without_events = build_definition("claims", end_activities=None)
    assert without_events.end_activities == () and not without_events.end_activities_learned


def test_definition_from_config_values() -> None:
    """Config values become typed fields: owners, SLA, calendar, latest review, rules."""
    review = Review(process="onboarding", by="bob", at=datetime(2026, 6, 1, 10, tzinfo=UTC))
    other = Review(process="claims", by="eve", at=datetime(2026, 7, 1, 10, tzinfo=UTC))
    definition = build_definition(
        "onboarding", owners="alice", team="back-office/kyc", last_reviewed=date(2025, 3, 1),
        reviews=[review, other], review_interval_months=12, sla="5 business days",
        calendar=CalendarSettings(country="NL", opens=time(8)), reference_model="m.bpmn",
        end_activities=("Send welcome pack",), rules=None)
    assert definition.owner == "alice"
    assert (definition.last_reviewed, definition.reviewed_by) == (date(2026, 6, 1), "bob")
    assert definition.review_interval_months == 12
    assert definition.sla == Duration(5, "business_days")
    assert definition.calendar == WorkCalendar(country="NL", opens=time(8))
    assert definition.reference_model == "m.bpmn"
    assert definition.configured


def test_definition_refuses_bad_values() -> None:
    """A bad SLA or a review interval under one month is refused, saying what is wrong."""
    with pytest.raises(AlertConfigError, match="unknown unit"):
        build_definition("claims", sla="5 fortnights")
    with pytest.raises(AlertConfigError, match="review_interval_months 0"):
        build_definition("claims", review_interval_months=0)
