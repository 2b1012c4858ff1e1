"""Run every enabled rule over one process, like a chain of small processors.

Each rule has the one signature ``Rule = Callable[[RuleContext], list[Finding]]`` and sees the
same context (the process definition with its thresholds, its events, "now"); the derived
tables (``ctx.facts``) are computed once and shared. A rule that fails is logged and skipped:
one broken rule never hides what the others found.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import structlog

from alerts.context import Rule, RuleContext
from alerts.registry import ProcessDefinition
from alerts.rules import RULES
from mining.frame import Events
from schemas.alerts import Finding
from schemas.errors import BacklightError

log = structlog.stdlib.get_logger("backlight.alerts.evaluate")


def run_rules(process: ProcessDefinition, events: Events, now: datetime,
              rules: Mapping[str, Rule] = RULES) -> list[Finding]:
    """Every enabled rule's findings for one process, in rule order."""
    ctx = RuleContext(process, events, now)
    found: list[Finding] = []
    for name, rule in rules.items():
        if not getattr(process.rules, name).enabled:
            continue
        try:
            found.extend(rule(ctx))
        except (BacklightError, ValueError, ArithmeticError) as exc:
            log.error("rule failed", rule=name, process=process.name, error=str(exc))
    return found
