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

``anchored`` turns a rule body ``run(ctx, anchor, scope)`` into a ``RuleFunction``: one run
with no anchor for the keys with none, then one run per distinct anchor of the rule's keys, of
which only those keys' findings are taken; each anchored run is given those keys
(``alerts.context.Scope``) and skips every other subject's statistics, so an open alert costs
its own key's statistics, not a whole run of its rule. Each rule's module says how it honours
its anchor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from alerts.context import BaselineAnchor, RuleContext, Scope
from schemas.alerts import Acceptance, Alert, Finding, Status

AnchoredRun = Callable[[RuleContext, BaselineAnchor | None, Scope], list[Finding]]
"""A rule body: its findings with no anchor (None), or judged against one anchor; the scope
names the keys it must judge (it may skip every other subject)."""
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


@dataclass(frozen=True)
class Anchored:
    """The rule function of rule ``name`` (a ``RuleFunction``): ``run`` once without an anchor
    for the keys that have none (or whose accepted anchor ``expired``), and once per distinct
    anchor for its keys, each anchored run told its keys (``Scope``) so that it costs only them.
    ``frozen`` False: the rule has no sliding baseline, a frozen anchor changes nothing (its
    keys are taken from the run without an anchor, and no run is spent on it)."""

    name: str
    run: AnchoredRun
    expired: Expired = never
    frozen: bool = True

    def __call__(self, ctx: RuleContext) -> list[Finding]:
        return self.findings(ctx)

    def findings(self, ctx: RuleContext, restrict: bool = True) -> list[Finding]:
        """The findings; ``restrict`` False: each anchored run judges every subject (the same
        findings for its keys, at the cost of a whole run: for comparison)."""
        process = ctx.process.name
        prefix = f"{self.name}/{process}/"
        mine = {key: anchor for key, anchor in ctx.anchors.items() if key.startswith(prefix)
                and (anchor.accepted or self.frozen)
                and not (anchor.accepted and self.expired(ctx, key, anchor))}
        found = [f for f in self.run(ctx, None, Scope(self.name, process)) if f.key not in mine]
        for anchor in sorted(set(mine.values()), key=lambda a: (a.until, a.start or a.until)):
            keys = frozenset(key for key, pinned in mine.items() if pinned == anchor)
            scope = Scope(self.name, process, keys if restrict else None)
            found += [f for f in self.run(ctx, anchor, scope) if f.key in keys]
        return found


def anchored(name: str, run: AnchoredRun, expired: Expired = never,
             frozen: bool = True) -> Anchored:
    """The rule function of rule ``name`` over its body ``run`` (see ``Anchored``)."""
    return Anchored(name, run, expired, frozen)
