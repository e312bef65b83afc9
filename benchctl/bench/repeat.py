"""``bench --repeat N``: N runs of the same points folded into one run of means with their 95 % confidence
intervals (Student's t, N - 1 degrees of freedom) and coefficients of variation.

Each repetition is a complete run of its own (its folder, requests, manifest); the aggregate run lists them
(``repeats``) and holds, per point, every numeric figure as the mean over the repetitions (so every reader of
a run -- ``results``, ``compare``, reports -- reads it like a single run) plus ``ci95`` and ``cv`` for the
headline metrics (``compare``'s names). ``compare`` then says a difference is within noise when both sides'
intervals overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from benchctl.bench.results import PointResult, RunResult

# t(0.975, df) for df = 1..30 (two-sided 95 %); larger df use the 40/60/120 rows, then the normal 1.960.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_critical(df: int) -> float:
    """Student's t quantile 0.975 for ``df`` degrees of freedom (the table every statistics text prints)."""
    if df < 1:
        raise ValueError("a confidence interval needs at least two values")
    if df <= 30:
        return _T975[df - 1]
    return 2.021 if df <= 40 else 2.000 if df <= 60 else 1.980 if df <= 120 else 1.960


def interval(values: Sequence[float]) -> tuple[float, float, float, float]:
    """(mean, low, high, cv) of ``values``: the 95 % interval of the mean, cv = sample sd / mean (0 if mean 0)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_critical(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, (sd / abs(mean) if mean else 0.0)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def mean_tree(items: Sequence[Any]) -> Any:
    """Numbers → their mean; mappings → key by key; anything else → the first repetition's value."""
    first = items[0]
    if all(_is_number(v) for v in items):
        mean = sum(items) / len(items)
        return round(mean) if all(isinstance(v, int) for v in items) and mean == round(mean) else mean
    if isinstance(first, Mapping) and all(isinstance(v, Mapping) for v in items):
        return {k: mean_tree([v[k] for v in items if k in v]) for k in first}
    return first


def aggregate(runs: Sequence[RunResult]) -> RunResult:
    """One run of means over ``runs`` (the same points, matched by their label), with ci95 and cv."""
    from benchctl.bench.compare import METRICS, points_of

    base = runs[0]
    tables = [points_of(r) for r in runs]
    points: list[PointResult] = []
    for label in tables[0]:
        same = [t[label] for t in tables if label in t]
        values = dict(mean_tree(list(same)))
        ci, cv = {}, {}
        for metric in METRICS.get(base.kind, ()):
            figures = [f for f in (metric.read(p) for p in same) if f is not None]
            if len(figures) == len(same) and len(figures) >= 2:
                _, low, high, var = interval(figures)
                ci[metric.name], cv[metric.name] = [low, high], var
        values.update({"repetitions": len(same), "ci95": ci, "cv": cv})
        if base.kind != "io500":
            points.append(PointResult(values))
    result = RunResult(kind=base.kind, service=dict(base.service), config=dict(base.config),
                       metrics=mean_tree([r.metrics for r in runs]) if base.kind != "io500" else {},
                       points=points, client_health={"repeats": [r.client_health for r in runs]},
                       errors={k: sum(r.errors.get(k, 0) for r in runs) for r in runs for k in r.errors},
                       extra={"repeats": [r.run_id for r in runs], "repeat_count": len(runs),
                              "status": "complete" if all(r.status == "complete" for r in runs) else "interrupted"})
    if base.kind == "io500":  # one "point": the run's metrics, with its intervals beside them
        same = [t["run"] for t in tables]
        result.metrics = dict(mean_tree(list(same)))
        ci = {}
        for metric in METRICS["io500"]:
            figures = [f for f in (metric.read(p) for p in same) if f is not None]
            if len(figures) == len(same) >= 2:
                _, low, high, _ = interval(figures)
                ci[metric.name] = [low, high]
        result.metrics["ci95"] = ci
    return result


def overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool | None:
    """Whether two [low, high] intervals overlap (None when either is missing)."""
    if not a or not b or len(a) != 2 or len(b) != 2:
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def interval_of(point: Mapping[str, Any], metric: str) -> list[float] | None:
    found = (point.get("ci95") or {}).get(metric) if isinstance(point.get("ci95"), Mapping) else None
    return list(found) if isinstance(found, (list, tuple)) and len(found) == 2 else None


__all__ = ["aggregate", "interval", "interval_of", "mean_tree", "overlap", "t_critical"]
