"""The rule registry: each rule declared once (name, thresholds, function, lifecycle policy),
the config's [alerts.rules] table and the lifecycle's defaults following from it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from alerts.context import RuleContext
from alerts.evaluate import run_rules
from alerts.lifecycle import LifecyclePolicy
from alerts.registry import ProcessDefinition
from alerts.rules import RULES, disagreement
from alerts.rules.governance import NO_OWNER, STALE_REVIEW
from alerts.thresholds import RuleSettings, Stuck
from mining.frame import empty_frame, prepare

NOW = datetime(2026, 11, 25, 9, tzinfo=UTC)


def test_every_declared_rule_is_a_config_key_of_its_thresholds_type() -> None:
    """[alerts.rules] has exactly one table per declared rule, named as the rule, and each
    rule reads its own thresholds from it."""
    assert disagreement(RULES) is None
    assert set(RuleSettings.model_fields) == {rule.name for rule in RULES}
    settings = RuleSettings()
    assert all(type(rule.settings_in(settings)) is rule.settings for rule in RULES)


def test_a_registry_that_drifted_from_the_config_is_named() -> None:
    """A rule left out, declared twice, or declared with another rule's thresholds is reported
    with the rule's name (importing alerts.rules raises it)."""
    assert disagreement(RULES[1:]) == "RuleSettings.no_events is no declared rule"
    renamed = [replace(r, name="no_one") if r is NO_OWNER else r for r in RULES]
    assert disagreement(renamed) == "rule 'no_one' has no RuleSettings field"
    assert disagreement((*RULES, NO_OWNER)) == "rule 'no_owner' is declared twice"
    wrong = [replace(r, settings=Stuck) if r is NO_OWNER else r for r in RULES]
    assert disagreement(wrong) == ("RuleSettings.no_owner is <class 'alerts.thresholds.NoOwner'>, "
                                   "but the rule's settings are Stuck")


def test_lifecycle_inhibition_follows_the_declarations() -> None:
    """By default no_events inhibits, and no_events and the governance rules are never
    inhibited: what their declarations say."""
    policy = LifecyclePolicy()
    assert policy.inhibited_by == ("no_events",)
    assert policy.never_inhibited == ("no_events", "stale_review", "no_owner")


def test_findings_carry_the_declared_name() -> None:
    """A governance finding's rule is its declaration's name (the alert key starts with it)."""
    process = ProcessDefinition("claims")
    ctx = RuleContext(process, prepare(empty_frame()), NOW)
    assert [f.key for f in STALE_REVIEW.run(ctx)] == ["stale_review/claims/review"]
    assert [f.key for f in NO_OWNER.run(ctx)] == ["no_owner/claims/owner"]


def test_a_rule_switched_off_in_its_table_is_not_run() -> None:
    """enabled = false in [alerts.rules.no_owner]: run_rules skips it, the others still run."""
    off = RuleSettings().merged({"no_owner": {"enabled": False}})
    process = ProcessDefinition("claims", last_reviewed=date(2020, 1, 1), rules=off)
    found = run_rules(process, prepare(empty_frame()), NOW)
    assert [f.rule for f in found] == ["stale_review"]
