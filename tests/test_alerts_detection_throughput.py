"""Throughput degradation on the simulator: found over seeds, dated near the injected onset."""

from __future__ import annotations

from test_alerts_detection_waits import ONSET, business_days_off, context, events_of, last_arrival

from alerts.rules.throughput import throughput
from ingest.simulate import Anomalies, Bottleneck, simulate

SEEDS = range(5)


def test_throughput_degradation_is_found_over_seeds() -> None:
    """A ten-fold slowdown of Risk review from ONSET makes whole onboarding cases take more than
    twice as long: the rule fires on every seed, once, dated within 5 business days of the
    onset (case durations are dated by completion, so they lag the step that slowed down)."""
    offsets = []
    for seed in SEEDS:
        sim = simulate("onboarding", 40 * 120, seed=seed,
                       anomalies=Anomalies(bottleneck=Bottleneck("Risk review", ONSET, 10.0)))
        findings = throughput(context("onboarding", events_of(sim), last_arrival(sim)))
        assert [f.subject for f in findings] == ["case duration"], seed
        assert "cases now take" in findings[0].summary
        offsets.append(business_days_off(findings[0].since))
    print(f"\nthroughput 'since' vs injected onset, business days per seed: {offsets}")
    assert max(offsets) <= 5
    assert sum(o <= 3 for o in offsets) >= 0.8 * len(offsets)
