"""Checks that an alert document does not contradict its own evidence (issue 17: "Every alert
consistent with its evidence"), for the real-logs benchmark."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

NEAR_ZERO_DAYS = 0.01  # a baseline under about five business minutes: no ratio against it
RATIO = re.compile(r"\b\d[\d,]*(\.\d+)?x\b")
UNDER_ZERO = re.compile(r"under 0(?![\d.])")
SPLIT = re.compile(r"\((\d+) of (\d+)[;)][^:]*: (\d+) repeated by the same person, (\d+) redone")
LEADING = re.compile(r"^(\d+) \S+ cases? ")


def documents(body: Any) -> Iterator[dict[str, Any]]:
    """Every alert (a mapping with a summary and evidence) inside a stored JSON document."""
    if isinstance(body, dict):
        if isinstance(body.get("summary"), str) and isinstance(body.get("evidence"), dict):
            yield body
        for value in body.values():
            yield from documents(value)
    elif isinstance(body, list):
        for value in body:
            yield from documents(value)


def _median(figures: Any) -> float | None:
    value = figures.get("median_days") if isinstance(figures, dict) else None
    return float(value) if isinstance(value, int | float) else None


def contradictions(alert: dict[str, Any]) -> list[str]:
    """What in one alert contradicts its evidence: an increase whose recent figure is not above
    its baseline, a ratio stated against a near-zero baseline, "under 0", counts in one sentence
    that come from different case sets."""
    summary, evidence, subject = alert["summary"], alert["evidence"], str(alert.get("subject", ""))
    found = []
    recent, baseline = _median(evidence.get("recent")), _median(evidence.get("baseline"))
    if recent is not None and baseline is not None:
        if recent <= baseline:
            found.append(f"increase not above its baseline ({recent} <= {baseline} days)")
        if baseline < NEAR_ZERO_DAYS and (RATIO.search(summary) or evidence.get("ratio")):
            found.append(f"a ratio against a near-zero baseline ({baseline} days)")
    share, base_share = evidence.get("since_share"), evidence.get("baseline_share")
    if share is None and evidence.get("since_cases"):
        share = evidence.get("since_cases_hit", 0) / evidence["since_cases"]
    if "cap" not in subject and isinstance(share, int | float) and \
            isinstance(base_share, int | float) and share <= base_share:
        found.append(f"increase not above its baseline share ({share:.3f} <= {base_share:.3f})")
    if UNDER_ZERO.search(summary):
        found.append('"under 0"')
    if (m := SPLIT.search(summary)) is not None:
        hits, same, redo = int(m[1]), int(m[3]), int(m[4])
        if max(same, redo) > hits:
            found.append(f"{same} repeated / {redo} redone in a sentence about {hits} cases")
    count = evidence.get("count")
    if (m := LEADING.match(summary)) is not None and isinstance(count, int) and int(m[1]) != count:
        found.append(f"says {m[1]} cases, its evidence counts {evidence['count']}")
    if "loop" in subject and (m := re.search(r": (\d+) \S+ cases? since", summary)) and \
            evidence.get("since_cases_hit") is not None and int(m[1]) != evidence["since_cases_hit"]:
        found.append(f"says {m[1]} cases, its evidence counts {evidence['since_cases_hit']}")
    return found
