"""Run every enabled rule over one process, like a chain of small processors.

Each rule (``alerts.rules.RULES``, declared as ``alerts.context.Rule``) has the one signature
``RuleFunction = Callable[[RuleContext], list[Finding]]`` and sees the same context (the process
definition with its thresholds, its events, "now"); the derived tables (``ctx.facts``) are
computed once and shared; the anchors of the open and accepted episodes
(``alerts.anchors``) pin the baselines of their keys. A rule that fails raises an error of the one hierarchy
(``BacklightError``); it is logged and skipped: one broken rule never hides what the others
found. Anything else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog

from alerts.context import BaselineAnchor, Rule, RuleContext
from alerts.registry import ProcessDefinition
from alerts.rules import RULES
from mining.frame import Events
from schemas.alerts import Finding
from schemas.errors import BacklightError

log = structlog.stdlib.get_logger("backlight.alerts.evaluate")


def run_rules(process: ProcessDefinition, events: Events, now: datetime,
              rules: Sequence[Rule[Any]] = RULES,
              anchors: Mapping[str, BaselineAnchor] | None = None) -> list[Finding]:
    """Every enabled rule's findings for one process, in rule order; ``anchors`` are the stored
    alerts' pinned baselines (``alerts.anchors.anchors_of``), which the rules honour."""
    ctx = RuleContext(process, events, now, anchors or {})
    found: list[Finding] = []
    for rule in rules:
        if not rule.settings_in(process.rules).enabled:
            continue
        try:
            found.extend(rule.run(ctx))
        except BacklightError as exc:
            log.error("rule failed", rule=rule.name, process=process.name, error=str(exc))
    return found
