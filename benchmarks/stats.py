"""Median and spread of repeated measurements."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """The median of several measurements and their range, shown as ``median [min, max]``."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values) -> "Summary":
        values = [float(v) for v in values]
        if not values:
            raise ValueError("no measurements")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, digits: int = 2, unit: str = "") -> str:
        fmt = f"{{:.{digits}f}}"
        return (f"{fmt.format(self.median)}{unit} "
                f"[{fmt.format(self.low)}, {fmt.format(self.high)}]")


def paired_ratios(numerators, denominators) -> list[float]:
    """Ratios of measurements taken side by side (same process, same round)."""
    return [n / d for n, d in zip(numerators, denominators) if d]
