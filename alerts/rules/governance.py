"""Governance rules: a process definition not reviewed within its interval, or without exactly
one accountable owner. Pure, and they need no events (they hold for a process with none)."""

from __future__ import annotations

from typing import Final

from alerts.context import Rule, RuleContext
from alerts.registry import months_between, review_due
from alerts.thresholds import NoOwner, StaleReview
from schemas.alerts import Finding


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def stale_review(ctx: RuleContext) -> list[Finding]:
    """stale_review: fires from the day the next review is due (last review + interval months,
    calendar months) and while it is not done; or when the process was never reviewed."""
    process, settings = ctx.process, ctx.process.rules.stale_review
    if not settings.enabled:
        return []
    interval = process.review_interval_months
    every = f"due every {_plural(interval, 'month')}"
    today = process.calendar.business_day_of(ctx.now)
    last = process.last_reviewed
    evidence = {"last_reviewed": last.isoformat() if last else None,
                "reviewed_by": process.reviewed_by, "review_interval_months": interval}
    if last is None:
        summary = f"{process.name}: process definition never reviewed ({every})"
        return [Finding(rule=STALE_REVIEW.name, process=process.name, subject="review",
                        severity=settings.severity, summary=summary,
                        evidence={**evidence, "due": None, "months_since_review": None})]
    due = review_due(last, interval)
    if today < due:
        return []
    ago = months_between(last, today)
    by = f" by {process.reviewed_by}" if process.reviewed_by else ""
    when = f"due today, {due.isoformat()}" if today == due else f"overdue since {due.isoformat()}"
    summary = (f"{process.name}: process definition last reviewed {last.isoformat()}{by}, "
               f"{_plural(ago, 'month')} ago ({every}, {when})")
    return [Finding(rule=STALE_REVIEW.name, process=process.name, subject="review",
                    severity=settings.severity, summary=summary, since=due,
                    evidence={**evidence, "due": due.isoformat(), "months_since_review": ago,
                              "days_overdue": (today - due).days})]


def no_owner(ctx: RuleContext) -> list[Finding]:
    """no_owner: fires when the process has no owner, or more than one (one person must be
    accountable)."""
    process, settings = ctx.process, ctx.process.rules.no_owner
    owners = process.owners
    if not settings.enabled or len(owners) == 1:
        return []
    if not owners:
        where = "" if process.configured else " (it is not in the config)"
        summary = f"{process.name} has no accountable owner{where}"
    else:
        summary = (f"{process.name} has {len(owners)} owners ({', '.join(owners)}): "
                   "one person must be accountable")
    return [Finding(rule=NO_OWNER.name, process=process.name, subject="owner",
                    severity=settings.severity, summary=summary,
                    evidence={"owners": list(owners), "team": process.team,
                              "configured": process.configured})]


STALE_REVIEW: Final = Rule(name="stale_review", settings=StaleReview, run=stale_review,
                           inhibitable=False)
NO_OWNER: Final = Rule(name="no_owner", settings=NoOwner, run=no_owner, inhibitable=False)
"""Governance holds without events: a stopped feed never freezes these."""
