"""Governance rules: stale reviews and processes without exactly one accountable owner."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from alerts.context import RuleContext
from alerts.registry import ProcessDefinition, build_definition
from alerts.rules.governance import no_owner, stale_review
from alerts.thresholds import RuleSettings
from mining.frame import empty_frame, prepare
from schemas.alerts import Finding, Review, Severity

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
NO_EVENTS = prepare(empty_frame())


def findings(process: ProcessDefinition, now: datetime = NOW) -> list[Finding]:
    """Both governance rules' findings for one process with no events."""
    ctx = RuleContext(process, NO_EVENTS, now)
    return stale_review(ctx) + no_owner(ctx)


def reviewed(name: str, last: date | None, *, by: str | None = "alice",
             owners: str | tuple[str, ...] = ("alice",), reviews: tuple[Review, ...] = (),
             **kwargs: Any) -> ProcessDefinition:
    """A process definition as the registry builds it from config and recorded reviews."""
    return build_definition(name, owners=owners, last_reviewed=last, reviewed_by=by,
                            reviews=reviews, **kwargs)


def test_exactly_the_expected_governance_findings() -> None:
    """17 months: nothing; 18: due today; 19: overdue; never: fires; no owner and two owners
    fire; one owner with a recent review: nothing."""
    processes = [
        reviewed("seventeen", date(2025, 4, 1)),
        reviewed("eighteen", date(2025, 3, 1)),
        reviewed("nineteen", date(2025, 2, 1)),
        reviewed("never", None, by=None),
        reviewed("claims", date(2026, 1, 10), owners=()),
        reviewed("payments", date(2026, 1, 10), owners=("alice", "bob")),
        reviewed("healthy", date(2026, 1, 10)),
    ]
    found = {(f.process, f.rule) for p in processes for f in findings(p)}
    assert found == {("eighteen", "stale_review"), ("nineteen", "stale_review"),
                     ("never", "stale_review"), ("claims", "no_owner"), ("payments", "no_owner")}


def test_due_today_says_so_and_since_is_the_due_date() -> None:
    """Reviewed exactly 18 months ago: the alert fires today, since today."""
    [finding] = findings(reviewed("onboarding", date(2025, 3, 1)))
    assert finding.since == date(2026, 9, 1)
    assert finding.summary == ("onboarding: process definition last reviewed 2025-03-01 by alice, "
                               "18 months ago (due every 18 months, due today, 2026-09-01)")


def test_overdue_review_carries_its_evidence() -> None:
    """Reviewed 19 months ago: overdue since the due date, with the figures behind it."""
    [finding] = findings(reviewed("onboarding", date(2025, 2, 1)))
    assert finding.rule == "stale_review" and finding.subject == "review"
    assert finding.key == "stale_review/onboarding/review"
    assert finding.since == date(2026, 8, 1)
    assert finding.severity is Severity.WARNING
    assert finding.summary == ("onboarding: process definition last reviewed 2025-02-01 by alice, "
                               "19 months ago (due every 18 months, overdue since 2026-08-01)")
    assert finding.evidence == {"last_reviewed": "2025-02-01", "reviewed_by": "alice",
                                "review_interval_months": 18, "due": "2026-08-01",
                                "months_since_review": 19, "days_overdue": 31}


def test_never_reviewed_fires_without_since() -> None:
    """A process never reviewed fires, says so, and has no 'since' date."""
    [finding] = findings(reviewed("claims", None, by=None))
    assert finding.since is None
    assert finding.summary == "claims: process definition never reviewed (due every 18 months)"
    assert finding.evidence["last_reviewed"] is None


def test_recorded_review_newer_than_config_clears_the_alert() -> None:
    """`backlight review` recorded last month wins over the config's old date: no alert."""
    review = Review(process="onboarding", by="bob", at=datetime(2026, 8, 20, 14, tzinfo=UTC))
    process = reviewed("onboarding", date(2025, 2, 1), reviews=(review,))
    assert process.last_reviewed == date(2026, 8, 20) and process.reviewed_by == "bob"
    assert findings(process) == []


def test_a_review_of_another_process_does_not_count() -> None:
    """A review recorded for claims does not clear onboarding's stale alert."""
    review = Review(process="claims", by="bob", at=datetime(2026, 8, 20, 14, tzinfo=UTC))
    process = reviewed("onboarding", date(2025, 2, 1), reviews=(review,))
    assert [f.rule for f in findings(process)] == ["stale_review"]


def test_review_due_follows_the_process_interval_and_local_date() -> None:
    """A 6-month interval is due 6 calendar months on; 'today' is the calendar's local date
    (22:30 UTC on 31 August is already 1 September in Amsterdam)."""
    process = reviewed("payments", date(2026, 3, 1), review_interval_months=6)
    assert findings(process, datetime(2026, 8, 31, 21, 59, tzinfo=UTC)) == []
    [finding] = findings(process, datetime(2026, 8, 31, 22, 30, tzinfo=UTC))
    assert finding.since == date(2026, 9, 1)
    assert "due every 6 months" in finding.summary


def test_month_end_review_is_due_at_the_end_of_the_shorter_month() -> None:
    """Reviewed 2024-08-31 with an 18-month interval: due 2026-02-28, not in March."""
    process = reviewed("claims", date(2024, 8, 31))
    assert findings(process, datetime(2026, 2, 27, 12, tzinfo=UTC)) == []
    [finding] = findings(process, datetime(2026, 2, 28, 12, tzinfo=UTC))
    assert finding.since == date(2026, 2, 28)


def test_no_owner_and_two_owners_say_what_is_wrong() -> None:
    """No owner, two owners and an unconfigured process each say why no one is accountable."""
    [none] = findings(reviewed("claims", date(2026, 6, 1), owners=()))
    assert none.summary == "claims has no accountable owner"
    assert none.key == "no_owner/claims/owner" and none.since is None
    [two] = findings(reviewed("payments", date(2026, 6, 1), owners=("alice", "bob")))
    assert two.summary == "payments has 2 owners (alice, bob): one person must be accountable"
    assert two.evidence["owners"] == ["alice", "bob"]
    unknown = ProcessDefinition(name="refunds", configured=False)
    assert [f.summary for f in no_owner(RuleContext(unknown, NO_EVENTS, NOW))] == [
        "refunds has no accountable owner (it is not in the config)"]


def test_owners_written_as_one_string_are_counted() -> None:
    """'alice, bob' in the config names two owners; 'alice, Alice' names one."""
    two = reviewed("payments", date(2026, 6, 1), owners="alice, bob")
    assert two.owners == ("alice", "bob")
    assert [f.rule for f in findings(two)] == ["no_owner"]
    assert findings(reviewed("payments", date(2026, 6, 1), owners="alice, Alice")) == []


@pytest.mark.parametrize("rule", ["stale_review", "no_owner"])
def test_severity_and_enabled_come_from_the_process_rules(rule: str) -> None:
    """The process's rule settings set the severity, and a disabled rule says nothing."""
    critical = RuleSettings().merged({rule: {"severity": "critical"}})
    process = reviewed("claims", None, by=None, owners=(), rules=critical)
    assert [f.severity for f in findings(process) if f.rule == rule] == [Severity.CRITICAL]
    disabled = RuleSettings().merged({rule: {"enabled": False}})
    process = reviewed("claims", None, by=None, owners=(), rules=disabled)
    assert [f.rule for f in findings(process)] == [r for r in ("stale_review", "no_owner") if r != rule]
