"""Run every enabled rule over one process, like a chain of small processors.

Each rule (``alerts.rules.RULES``, declared as ``alerts.context.Rule``) has the one signature
``RuleFunction = Callable[[RuleContext], list[Finding]]`` and sees the same context (the process
definition with its thresholds, its events, "now"); the derived tables (``ctx.facts``) are
computed once and shared. A rule that fails raises an error of the one hierarchy
(``BacklightError``); it is logged and skipped: one broken rule never hides what the others
found. Anything else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from alerts.context import Rule, RuleContext
from alerts.registry import ProcessDefinition
from alerts.rules import RULES
from mining.frame import Events
from schemas.alerts import Finding
from schemas.errors import BacklightError

log = structlog.stdlib.get_logger("backlight.alerts.evaluate")


def run_rules(process: ProcessDefinition, events: Events, now: datetime,
              rules: Sequence[Rule[Any]] = RULES) -> list[Finding]:
    """Every enabled rule's findings for one process, in rule order."""
    ctx = RuleContext(process, events, now)
    found: list[Finding] = []
    for rule in rules:
        if not rule.settings_in(process.rules).enabled:
            continue
        try:
            found.extend(rule.run(ctx))
        except BacklightError as exc:
            log.error("rule failed", rule=rule.name, process=process.name, error=str(exc))
    return found
