"""A scripted alert history with known answers, for time to act and the weekly digest: three
alerts on a UTC 09:00-17:00 Monday-Friday calendar in the week of Monday 2 November 2026.

- A (claims, bottleneck): fires Mon 09:00, acknowledged by ana Mon 11:00 (2 business hours),
  resolved Tue 13:00 (12 business hours after firing), confirmed Mon 9 Nov 09:00 (40).
- B (claims, rework): fires Fri 30 Oct 16:00, acknowledged Mon 10:00 by bo, who names ops as
  the fix owner (2 business hours), resolved Mon 17:00 (9), back on Wed 09:00 (recurred): a
  second episode, not acknowledged, still open.
- C (payments, stuck): fires Tue 09:00, never acknowledged, still open.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from alerts.calendar import WorkCalendar
from schemas.alerts import Alert, AlertChange, Change, Severity, Status

CALENDAR = WorkCalendar(timezone="UTC", opens=datetime(2000, 1, 1, 9).time(),
                        closes=datetime(2000, 1, 1, 17).time())
MON = datetime(2026, 11, 2, 9, tzinfo=UTC)


def hours(process: str, start: datetime, end: datetime) -> float:
    """Business hours on the scripted calendar (every process shares it)."""
    return CALENDAR.between(start, end) / 3600


def at(days: float, hour: int = 9) -> datetime:
    """A moment counted in days from Monday 2 November 2026 at ``hour`` UTC."""
    return (MON + timedelta(days=days)).replace(hour=hour)


def alert(name: str, rule: str, process: str, fired: datetime, **state: Any) -> Alert:
    """A firing alert of the scripted history (its evidence as its rule writes it)."""
    evidence: dict[str, Any] = {
        "bottleneck": {"recent": {"median_days": 3.5, "p90_days": 6.0, "cases": 40},
                       "baseline": {"median_days": 1.0, "p90_days": 2.0, "cases": 200},
                       "increase_days": 2.5},
        "rework": {"recent_cases_hit": 30, "recent_share": 0.3, "baseline_share": 0.1,
                   "recent": {"cases": 100}, "baseline": {"cases": 400}},
        "stuck": {"step": "Payout", "count": 3, "normal_p90_days": 1.0,
                  "cases": [{"case_id": f"p-{i}", "idle_days": 4.0 + i} for i in range(3)]},
    }.get(rule, {})
    return Alert(key=f"{rule}/{process}/{name}", rule=rule, process=process, subject=name,
                 severity=state.pop("severity", Severity.WARNING),
                 status=state.pop("status", Status.FIRING),
                 summary=state.pop("summary", f"{name} is wrong"), evidence=evidence, segment={},
                 since=date(2026, 10, 26), cases=("c-1",), owner=None, first_seen=fired,
                 last_seen=fired, fired_at=fired, **state)


def history() -> list[AlertChange]:
    """The scripted changes, oldest first."""
    a = alert("A", "bottleneck", "claims", at(0))
    b = alert("B", "rework", "claims", at(-3, 16))
    c = alert("C", "stuck", "payments", at(1))
    a_ack = replace(a, acknowledged_by="ana", acknowledged_at=at(0, 11))
    b_ack = replace(b, acknowledged_by="bo", acknowledged_at=at(0, 10), fix_owner="ops",
                    action="rebalance the queue")
    b_again = replace(b_ack, first_seen=at(2), fired_at=at(2), acknowledged_by=None,
                      fix_owner=None, action=None,
                      acknowledged_at=None, recurrences=1, severity=Severity.CRITICAL,
                      previous={"first_seen": b.first_seen.isoformat(),
                                "resolved_at": at(0, 17).isoformat(), "fix_owner": "ops",
                                "action": "rebalance the queue"})
    return [
        AlertChange(Change.FIRING, b, at(-3, 16)),
        AlertChange(Change.FIRING, a, at(0)),
        AlertChange(Change.ACKNOWLEDGED, b_ack, at(0, 10)),
        AlertChange(Change.ACKNOWLEDGED, a_ack, at(0, 11)),
        AlertChange(Change.RESOLVED, replace(b_ack, status=Status.RESOLVED,
                                             resolved_at=at(0, 17)), at(0, 17)),
        AlertChange(Change.FIRING, c, at(1)),
        AlertChange(Change.RESOLVED, replace(a_ack, status=Status.RESOLVED,
                                             resolved_at=at(1, 13)), at(1, 13)),
        AlertChange(Change.RECURRED, b_again, at(2)),
        AlertChange(Change.CONFIRMED, replace(a_ack, status=Status.CONFIRMED,
                                              resolved_at=at(1, 13), confirmed_at=at(7)), at(7)),
    ]


def states() -> dict[str, Alert]:
    """The stored alerts at the end of the script (each one's latest form)."""
    return {c.alert.key: c.alert for c in history()}
