"""Summary statistics shared by every benchmark client (percentiles as numpy's linear interpolation)."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * pct / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """count, mean, std (population), min, max and p50/p90/p95/p99/p99.9 of ``values``."""
    data = sorted(values)
    n = len(data)
    if n == 0:
        return {"count": 0}
    mean = sum(data) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in data) / n)
    out = {"count": float(n), "mean": mean, "std": std, "min": data[0], "max": data[-1]}
    for pct in PERCENTILES:
        out[f"p{pct:g}"] = percentile(data, pct)
    return out
