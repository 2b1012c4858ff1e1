"""Alerts as text for a terminal: grouped by process, one block per alert. Text that comes from
events (process, case ids, activities in summaries and keys) goes through ``printable``."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from schemas.alerts import Alert
from schemas.printable import printable as p

if TYPE_CHECKING:
    from backlight.alerting import EvaluationReport


def render_text(report: EvaluationReport) -> str:
    """What an evaluation found, grouped by process, then what would be (or was) queued."""
    when = report.now.isoformat(timespec="minutes")
    if not report.alerts:
        return f"No alerts as of {when}.\n"
    by_process: dict[str, list[Alert]] = defaultdict(list)
    for alert in report.alerts:
        by_process[alert.process].append(alert)
    lines = [f"Alerts as of {when}:"]
    for process, group in sorted(by_process.items()):
        owner = group[0].owner or "no accountable owner"
        lines.append(f"\n{p(process)} (owner: {p(owner)})")
        for a in sorted(group, key=lambda a: (-a.severity.rank, a.key)):
            flags = "".join([", acknowledged" if a.acknowledged else "",
                             ", silenced" if a.silenced else "",
                             ", flapping" if a.flapping else ""])
            since = f" since {a.since.isoformat()}" if a.since else ""
            lines.append(f"  [{a.severity.value} {a.status.value}{flags}] {p(a.rule)}{since}")
            lines.append(f"    {p(a.summary)}")
            if a.cases:
                more = f" (+{len(a.cases) - 5} more)" if len(a.cases) > 5 else ""
                lines.append(f"    cases: {', '.join(map(p, a.cases[:5]))}{more}")
    verb = "would send" if report.dry_run else "queued"
    if report.notifications:
        lines.append(f"\nNotifications ({verb}):")
        for n in report.notifications:
            kinds = ", ".join(f"{c.change.value} {p(c.alert.key)}" for c in n.changes)
            lines.append(f"  -> {p(n.channel)}: {p(n.process)}: {kinds}")
    elif report.changes:
        count = len(report.changes)
        lines.append(f"\n{count} change{'s' if count != 1 else ''}; no chat channel is "
                     "configured ([[channels]] in the config), so nothing is sent.")
    return "\n".join(lines) + "\n"
