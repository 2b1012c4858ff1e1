"""The alert rules: pure functions from a RuleContext (process, events, now) to findings.

``RULES`` is the registry: every rule's declaration (``alerts.context.Rule``: name, thresholds,
function, lifecycle policy), in evaluation order. Each rule module declares its own; this is
the one list of them. The config's ``[alerts.rules]`` table (``alerts.thresholds.RuleSettings``)
must have one field per declared rule, named as it and of its thresholds type: importing this
package fails (``AlertError``) when they disagree.

Owns the detection methods (no events, bottlenecks and waits, throughput, hand-offs, stuck
cases, rework and loops, conformance, governance): each says what holds now for one key and
knows nothing of history, which is the lifecycle's. A rule reads the mining core's figures;
like all of alerts it must never import ingest or the ``backlight`` shell, and it does no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alerts.context import Rule
from alerts.errors import AlertError
from alerts.rules.conformance import CONFORMANCE
from alerts.rules.governance import NO_OWNER, STALE_REVIEW
from alerts.rules.handoff import HANDOFF
from alerts.rules.no_events import NO_EVENTS
from alerts.rules.rework import REWORK
from alerts.rules.stuck import STUCK
from alerts.rules.throughput import THROUGHPUT
from alerts.rules.waits import BOTTLENECK
from alerts.thresholds import RuleSettings

RULES: tuple[Rule[Any], ...] = (
    NO_EVENTS, BOTTLENECK, THROUGHPUT, HANDOFF, STUCK, REWORK, CONFORMANCE, STALE_REVIEW, NO_OWNER,
)


def disagreement(rules: Sequence[Rule[Any]]) -> str | None:
    """What differs between the declared rules and ``RuleSettings``'s fields, or None."""
    names = [rule.name for rule in rules]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        return f"rule {twice[0]!r} is declared twice"
    fields = RuleSettings.model_fields
    unmatched = sorted(set(names) ^ set(fields))
    if unmatched:
        name = unmatched[0]
        return (f"rule {name!r} has no RuleSettings field" if name in names
                else f"RuleSettings.{name} is no declared rule")
    for rule in rules:
        if fields[rule.name].annotation is not rule.settings:
            return (f"RuleSettings.{rule.name} is {fields[rule.name].annotation}, but the rule's "
                    f"settings are {rule.settings.__name__}")
    return None


_problem = disagreement(RULES)
if _problem is not None:
    raise AlertError(f"alerts.rules: {_problem}")
