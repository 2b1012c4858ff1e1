"""Frozen and accepted baselines: an open episode keeps comparing with what was normal before it
began, and an accepted level becomes the key's normal.

Rules hold no state and compare a recent window with a baseline that slides with "now"; left
alone, a shift nobody fixed becomes its own baseline and its alert resolves by the passing of
time. So the evaluator hands every rule the anchors of the stored alerts (``anchors_of``, keyed
by alert key, in ``RuleContext.anchors``):

- an open episode (pending or firing, recovering included) anchors its key at its onset day
  (``Alert.baseline_until``): the rule judges the key against the baseline before that day, and
  reports it while the recent figure is not back within that baseline; so does a resolved one
  until it is confirmed (the figure must stay within that same baseline for ``confirm_after``,
  and a return meanwhile is a recurrence against it), then the baseline slides again;
- an accepted episode (``backlight alerts accept``) anchors its key at the data from the
  episode's onset up to the acceptance day: that level is the baseline from then on, until the
  rule's own sliding baseline has moved past the acceptance (``expired``), so it stays quiet
  unless the figure moves away from the accepted level.

``anchored`` turns a rule body ``run(ctx, anchor)`` into a ``RuleFunction``: one run with no
anchor for the keys with none, then one run per distinct anchor of the rule's keys, of which
only those keys' findings are taken. Each rule's module says how it honours its anchor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime

from alerts.context import BaselineAnchor, RuleContext, RuleFunction
from schemas.alerts import Acceptance, Alert, Finding, Status

AnchoredRun = Callable[[RuleContext, BaselineAnchor | None], list[Finding]]
"""A rule body: its findings with no anchor (None), or judged against one anchor."""
Expired = Callable[[RuleContext, str, BaselineAnchor], bool]
"""Whether an accepted anchor of a key no longer matters (the sliding baseline moved past it)."""


def _day(moment: datetime) -> date:
    """The day of a stored moment: ``baseline_until`` is the start (UTC) of the onset day."""
    return moment.date()


def anchors_of(alerts: Iterable[Alert],
               acceptances: Mapping[str, Acceptance]) -> dict[str, BaselineAnchor]:
    """The anchors of the stored alerts: frozen for an open episode, accepted for one accepted
    (recorded on the alert, or an acceptance given in the open episode and not yet applied)."""
    out: dict[str, BaselineAnchor] = {}
    for alert in alerts:
        onset = _day(alert.baseline_until) if alert.baseline_until else (
            alert.since or alert.first_seen.date())
        acceptance = acceptances.get(alert.key)
        if alert.accepted_at is not None:
            out[alert.key] = BaselineAnchor(until=_day(alert.accepted_at), start=onset)
        elif not alert.closed:
            if acceptance is not None and acceptance.at >= alert.first_seen:
                out[alert.key] = BaselineAnchor(until=_day(acceptance.at), start=onset)
            else:
                out[alert.key] = BaselineAnchor(until=onset)
        elif alert.status is Status.RESOLVED:
            out[alert.key] = BaselineAnchor(until=onset)  # confirmed only within that baseline
    return out


def never(_ctx: RuleContext, _key: str, _anchor: BaselineAnchor) -> bool:
    """An accepted anchor that never expires (a fixed level, not a sliding baseline)."""
    return False


def anchored(name: str, run: AnchoredRun, expired: Expired = never) -> RuleFunction:
    """The rule function of rule ``name``: ``run`` once without an anchor for the keys that have
    none (or whose accepted anchor ``expired``), and once per distinct anchor for its keys."""
    def rule(ctx: RuleContext) -> list[Finding]:
        prefix = f"{name}/{ctx.process.name}/"
        mine = {key: anchor for key, anchor in ctx.anchors.items() if key.startswith(prefix)
                and not (anchor.accepted and expired(ctx, key, anchor))}
        found = [f for f in run(ctx, None) if f.key not in mine]
        for anchor in sorted(set(mine.values()), key=lambda a: (a.until, a.start or a.until)):
            keys = {key for key, pinned in mine.items() if pinned == anchor}
            found += [f for f in run(ctx, anchor) if f.key in keys]
        return found

    rule.__name__ = rule.__qualname__ = name
    rule.__doc__ = run.__doc__
    return rule
