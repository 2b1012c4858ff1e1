"""The alert rules: pure functions from a RuleContext (process, events, now) to findings.

``RULES`` lists them by name in evaluation order; the names match ``alerts.thresholds``.

Owns the detection methods (no events, bottlenecks and waits, throughput, hand-offs, stuck
cases, rework and loops, conformance, governance): each says what holds now for one key and
knows nothing of history, which is the lifecycle's. A rule reads the mining core's figures;
like all of alerts it must never import ingest or the ``backlight`` shell, and it does no I/O.
"""

from __future__ import annotations

from alerts.context import Rule
from alerts.rules.conformance import conformance
from alerts.rules.governance import no_owner, stale_review
from alerts.rules.handoff import handoff
from alerts.rules.no_events import no_events
from alerts.rules.rework import rework
from alerts.rules.stuck import stuck
from alerts.rules.throughput import throughput
from alerts.rules.waits import bottleneck

RULES: dict[str, Rule] = {
    "no_events": no_events,
    "bottleneck": bottleneck,
    "throughput": throughput,
    "handoff": handoff,
    "stuck": stuck,
    "rework": rework,
    "conformance": conformance,
    "stale_review": stale_review,
    "no_owner": no_owner,
}
