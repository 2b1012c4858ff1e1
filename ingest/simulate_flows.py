"""The flow tables of the three simulated processes: onboarding, payments and claims.

This module owns what ``ingest.simulate`` walks: each process's steps (``Step``: team, mean
wait, work and outside hold, the weighted next steps), its arrival rate and case-id prefix
(``Flow``), the case attributes drawn for it, its regions, and the teams' head counts that
name the people handling a case. ``flow_of`` and ``activities`` look a process up; the working
calendar, the walk, the anomalies and the timestamps are ``ingest.simulate``'s.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.errors import SimulationError

PROCESSES: tuple[str, ...] = ("onboarding", "payments", "claims")

DAY = 510.0  # business minutes in one working day
END = "<end>"  # the case is finished
BACK = "<back>"  # return to the step that asked for the missing documents
REQUEST, RECEIVED = "Request missing documents", "Documents received"

# Each team's named people: (first number, head count) -> "u-<number>".
TEAMS: dict[str, tuple[int, int]] = {
    "front-office/branch": (101, 14), "front-office/contact-centre": (201, 18),
    "back-office/kyc": (301, 8), "back-office/risk": (321, 5), "back-office/operations": (341, 6),
    "back-office/payment-ops": (401, 7), "back-office/investigations": (421, 9),
    "back-office/claims-intake": (501, 6), "back-office/claims-handling": (521, 10),
    "back-office/loss-adjusters": (551, 4), "back-office/finance": (571, 4),
}


@dataclass(frozen=True)
class Step:
    """One activity of a flow: who does it, how long it waits and takes, what may follow."""

    team: str
    wait: float  # mean business minutes queued between the previous step's end and this start
    work: float  # mean business minutes of hands-on work; 0 = recorded the moment it happens
    next: tuple[tuple[str, float], ...]  # (next activity, END or BACK; weight)
    hold: float = 0.0  # mean business minutes an outside party (customer, bank) takes to answer


@dataclass(frozen=True)
class Flow:
    """One simulated process: its case ids, arrival rate, steps and case attributes."""

    prefix: str  # case ids are "<prefix>-000017"
    per_day: float  # new cases per working day
    steps: dict[str, Step]  # the first step starts every case
    attributes: Callable[[random.Random], dict[str, Any]]


def _money(rng: random.Random, median: float, step: int) -> int:
    return max(step, round(rng.lognormvariate(math.log(median), 0.9) / step) * step)


def pick(rng: random.Random, options: dict[str, int]) -> str:
    """One of ``options``, drawn by weight."""
    return rng.choices(list(options), weights=list(options.values()))[0]


def _onboarding_attributes(rng: random.Random) -> dict[str, Any]:
    return {
        "product": pick(rng, {"current-account": 6, "savings-account": 3, "business-account": 1}),
        "channel": pick(rng, {"online": 5, "branch": 4, "partner": 1}),
        "amount": _money(rng, 8_000, 500),
    }


def _payments_attributes(rng: random.Random) -> dict[str, Any]:
    return {
        "amount": round(rng.lognormvariate(math.log(2_500), 1.2), 2),
        "currency": pick(rng, {"EUR": 8, "USD": 1, "GBP": 1}),
        "channel": pick(rng, {"sepa": 6, "sepa-instant": 3, "swift": 2}),
        "reason": pick(rng, {"invalid-iban": 4, "beneficiary-name-mismatch": 3,
                             "sanctions-screening-hit": 1, "duplicate-payment": 1,
                             "missing-remittance-info": 2}),
    }


def _claims_attributes(rng: random.Random) -> dict[str, Any]:
    return {
        "product": pick(rng, {"motor": 5, "home": 4, "travel": 2}),
        "channel": pick(rng, {"phone": 4, "online": 5, "broker": 2}),
        "amount": _money(rng, 2_500, 50),
    }


# Regions are drawn from a stream of their own, so adding them changed no other draw.
REGIONS: dict[str, dict[str, int]] = {
    "onboarding": {"north": 3, "east": 2, "south": 3, "west": 2},
    "claims": {"north": 3, "east": 2, "south": 3, "west": 2},
}

_BRANCH, _CONTACT = "front-office/branch", "front-office/contact-centre"
_KYC, _RISK, _OPS = "back-office/kyc", "back-office/risk", "back-office/operations"
_PAYOPS, _INVEST = "back-office/payment-ops", "back-office/investigations"
_INTAKE, _HANDLING = "back-office/claims-intake", "back-office/claims-handling"
_ADJUST, _FINANCE = "back-office/loss-adjusters", "back-office/finance"

FLOWS: dict[str, Flow] = {
    "onboarding": Flow("onb", 40, {
        "Application submitted": Step(_BRANCH, 0, 0, (("Verify identity", 1),)),
        "Verify identity": Step(_KYC, 240, 15, (("KYC/AML screening", 0.78), (REQUEST, 0.22))),
        "KYC/AML screening": Step(_KYC, 360, 30, (
            ("Risk review", 0.8), (REQUEST, 0.12), ("Decline application", 0.08))),
        REQUEST: Step(_BRANCH, 60, 10, (
            (RECEIVED, 0.88), ("Withdraw application", 0.12)), hold=2 * DAY),
        RECEIVED: Step(_BRANCH, 30, 0, ((BACK, 0.85), (REQUEST, 0.15))),
        "Risk review": Step(_RISK, DAY, 45, (
            ("Approve application", 0.84), ("Decline application", 0.1), (REQUEST, 0.06))),
        "Approve application": Step(_RISK, 120, 10, (("Open account", 1),)),
        "Decline application": Step(_RISK, 120, 10, ((END, 1),)),
        "Withdraw application": Step(_BRANCH, 3 * DAY, 5, ((END, 1),)),
        "Open account": Step(_OPS, 240, 20, (("Send welcome pack", 1),)),
        "Send welcome pack": Step(_BRANCH, DAY, 5, ((END, 1),)),
    }, _onboarding_attributes),
    "payments": Flow("pay", 60, {
        "Exception raised": Step(_PAYOPS, 0, 0, (("Triage", 1),)),
        "Triage": Step(_INVEST, 180, 15, (
            ("Repair payment", 0.4), ("Customer enquiry", 0.25),
            ("Beneficiary bank enquiry", 0.2), ("Return to sender", 0.15))),
        "Customer enquiry": Step(_CONTACT, 120, 15, (
            ("Repair payment", 0.55), ("Return to sender", 0.2),
            ("Beneficiary bank enquiry", 0.1), ("Customer enquiry", 0.15)), hold=DAY),
        "Beneficiary bank enquiry": Step(_INVEST, 60, 20, (
            ("Repair payment", 0.45), ("Resolution", 0.35), ("Return to sender", 0.1),
            ("Beneficiary bank enquiry", 0.1)), hold=2 * DAY),
        "Repair payment": Step(_PAYOPS, 120, 20, (
            ("Resolution", 0.9), ("Beneficiary bank enquiry", 0.1))),
        "Return to sender": Step(_PAYOPS, 120, 15, (("Resolution", 1),)),
        "Resolution": Step(_INVEST, 90, 10, (("Close investigation", 1),)),
        "Close investigation": Step(_INVEST, 60, 5, ((END, 1),)),
    }, _payments_attributes),
    "claims": Flow("clm", 25, {
        "First notice of loss": Step(_CONTACT, 0, 0, (("Register claim", 1),)),
        "Register claim": Step(_INTAKE, 120, 15, (("Assessment", 0.8), (REQUEST, 0.2))),
        "Assessment": Step(_HANDLING, 480, 40, (
            ("Settlement offer", 0.55), ("Expert inspection", 0.25), (REQUEST, 0.1),
            ("Reject claim", 0.1))),
        REQUEST: Step(_CONTACT, 60, 10, (
            (RECEIVED, 0.9), ("Withdraw claim", 0.1)), hold=3 * DAY),
        RECEIVED: Step(_CONTACT, 30, 0, ((BACK, 0.85), (REQUEST, 0.15))),
        "Expert inspection": Step(_ADJUST, 4 * DAY, 120, (
            ("Settlement offer", 0.85), ("Reject claim", 0.15))),
        "Settlement offer": Step(_HANDLING, 240, 20, (
            ("Settlement accepted", 0.85), ("Settlement offer", 0.15)), hold=2 * DAY),
        "Settlement accepted": Step(_CONTACT, 30, 5, (("Payment", 1),)),
        "Payment": Step(_FINANCE, 480, 10, (("Close claim", 1),)),
        "Reject claim": Step(_HANDLING, 120, 15, (("Close claim", 1),)),
        "Withdraw claim": Step(_CONTACT, DAY, 5, (("Close claim", 1),)),
        "Close claim": Step(_HANDLING, 240, 5, ((END, 1),)),
    }, _claims_attributes),
}


def flow_of(process: str) -> Flow:
    if process not in FLOWS:
        raise SimulationError(f"unknown process {process!r}; valid processes: {', '.join(PROCESSES)}")
    return FLOWS[process]


def activities(process: str) -> tuple[str, ...]:
    """The activity names `process` can produce, in the order of its flow table."""
    return tuple(flow_of(process).steps)
