"""Targets for the benchmarks: each figure is printed beside its target (the README's figure or
the one the benchmark's docstring claims) and the limit at which the benchmark fails. The limit
is wide, as the machine is shared and noisy (about 1.5-2x for ratios measured side by side in
the same run, 3x or more for absolute times), so that a failure means the figure has rotted,
not that another job ran at the same time. Failures are collected and raised together once
every figure is printed."""

from __future__ import annotations


class Targets:
    """The figures of one benchmark checked against their targets."""

    def __init__(self) -> None:
        self.missed: list[str] = []

    def at_most(self, what: str, measured: float, target: float, fail_above: float,
                unit: str = "", spec: str = ".2f") -> str:
        """``measured`` should be at most ``target``; the benchmark fails above ``fail_above``."""
        assert fail_above >= target, (what, target, fail_above)
        line = (f"{what} {measured:{spec}}{unit} (target <= {target:{spec}}{unit}, "
                f"fails above {fail_above:{spec}}{unit})")
        if not measured <= fail_above:
            self.missed.append(line)
        return line

    def at_least(self, what: str, measured: float, target: float, fail_below: float,
                 unit: str = "", spec: str = ".2f") -> str:
        """``measured`` should be at least ``target``; the benchmark fails below ``fail_below``."""
        assert fail_below <= target, (what, target, fail_below)
        line = (f"{what} {measured:{spec}}{unit} (target >= {target:{spec}}{unit}, "
                f"fails below {fail_below:{spec}}{unit})")
        if not measured >= fail_below:
            self.missed.append(line)
        return line

    def check(self) -> None:
        """Fail naming every figure that missed its target by more than the margin."""
        assert not self.missed, "missed by more than the margin:\n  " + "\n  ".join(self.missed)
