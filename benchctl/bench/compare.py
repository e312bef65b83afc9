"""Comparing benchmark runs: the headline metrics of each kind, matched per sweep point, their changes against
the first run (the baseline), and the regressions beyond thresholds. Pure: ``RunResult``s in, a typed
``Comparison`` out; ``compare`` and ``results`` (``commands/results.py``) format it.

A change is relative (``+12.5`` = 12.5 % more than the baseline), except for the metrics that are already a
proportion (success rate in percentage points, recall as a fraction), whose change is the difference. Whether
a change is a regression depends on the metric's direction: a latency that rises, a throughput that falls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchctl.bench.results import RunResult

Reader = Callable[[Mapping[str, Any]], "float | None"]


class CompareError(ValueError):
    """Runs that cannot be compared, or a threshold that does not parse; one line, shown as such."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
        return None
    return float(value)


def _at(key: str) -> Reader:
    """A point's figure under ``key`` (``a.b``: nested; ``recall@``: the first ``recall@<k>``)."""
    def read(point: Mapping[str, Any]) -> float | None:
        if key.endswith("@"):
            return _number(next((v for k, v in point.items() if k.startswith(key)), None))
        found: Any = point
        for part in key.split("."):
            found = found.get(part) if isinstance(found, Mapping) else None
        return _number(found)

    return read


def _first(*keys: str) -> Reader:
    """The first of ``keys`` the point has (schema-1 LLM runs have ``median_*`` without ``p50_*``)."""
    readers = [_at(k) for k in keys]
    return lambda point: next((v for v in (r(point) for r in readers) if v is not None), None)


def _success(ok: str, failed: str) -> Reader:
    """ok / (ok + failed), in percent."""
    def read(point: Mapping[str, Any]) -> float | None:
        good, bad = _number(point.get(ok)), _number(point.get(failed))
        if good is None or bad is None or good + bad <= 0:
            return None
        return 100.0 * good / (good + bad)

    return read


@dataclass(frozen=True)
class Metric:
    """One compared figure: its name (thresholds, JSON), table label, reader and direction."""

    name: str
    label: str
    read: Reader
    higher_is_better: bool
    groups: tuple[str, ...] = ()  # threshold names that set it too ("p99", "throughput", ...)
    absolute: bool = False  # the change is the difference in its own unit, not a percentage
    digits: int = 1


def _ms(name: str, label: str, keys: tuple[str, ...], *groups: str) -> Metric:
    return Metric(name, label, _first(*keys), False, ("latency", *groups))


METRICS: dict[str, tuple[Metric, ...]] = {
    "llm": (
        Metric("request_throughput", "req/s", _at("request_throughput"), True, ("throughput",), digits=2),
        Metric("output_throughput", "out tok/s", _at("output_throughput"), True, ("throughput",)),
        _ms("ttft_p50", "TTFT p50 ms", ("p50_ttft_ms", "median_ttft_ms")),
        _ms("ttft_p99", "TTFT p99 ms", ("p99_ttft_ms",), "p99"),
        _ms("tpot_p50", "TPOT p50 ms", ("p50_tpot_ms", "median_tpot_ms")),
        _ms("tpot_p99", "TPOT p99 ms", ("p99_tpot_ms",), "p99"),
        _ms("itl_p50", "ITL p50 ms", ("p50_itl_ms", "median_itl_ms")),
        _ms("itl_p99", "ITL p99 ms", ("p99_itl_ms",), "p99"),
        _ms("e2el_p99", "E2EL p99 ms", ("p99_e2el_ms",), "p99"),
        Metric("success_rate", "success %", _success("completed", "failed"), True, ("success",), absolute=True),
    ),
    "vector": (
        Metric("qps", "QPS", _at("qps"), True, ("throughput",)),
        Metric("recall", "recall@k", _at("recall@"), True, ("recall",), absolute=True, digits=3),
        _ms("latency_p50", "p50 ms", ("latency_ms.p50",)),
        _ms("latency_p99", "p99 ms", ("latency_ms.p99",), "p99"),
        Metric("success_rate", "success %", _success("requests", "errors"), True, ("success",), absolute=True),
    ),
    "io500": (  # one "point": the run's printed [SCORE]
        Metric("score", "score", _at("score.total"), True, ("throughput",), digits=3),
        Metric("bandwidth", "GiB/s", _at("score.bandwidth"), True, ("throughput",), digits=3),
        Metric("iops", "kIOPS", _at("score.iops"), True, ("throughput",), digits=3),
    ),
}
# How much worse is tolerated before a change is a regression: % for relative metrics, percentage points for
# the success rate, a difference for recall. Names are groups or metric names; later entries win.
DEFAULT_THRESHOLDS: tuple[tuple[str, float | None], ...] = (
    ("p99", 10.0), ("throughput", 10.0), ("success", 1.0), ("recall", 0.01))
THRESHOLD_NAMES = tuple(dict.fromkeys([*(g for ms in METRICS.values() for m in ms for g in m.groups),
                                       *(m.name for ms in METRICS.values() for m in ms)]))


def parse_thresholds(text: str) -> list[tuple[str, float | None]]:
    """``ttft_p99=20,throughput=5%,recall=off`` → [(name, tolerated worsening or None = not gated)]. The sign
    does not matter: only a change in the worse direction counts."""
    out: list[tuple[str, float | None]] = []
    for part in (p.strip() for p in text.split(",")):
        name, eq, raw = part.partition("=")
        name, raw = name.strip(), raw.strip().removesuffix("%").strip()
        if not eq or not name or not raw:
            raise CompareError(f"expected metric=PCT (e.g. ttft_p99=20), got {part!r}")
        if name not in THRESHOLD_NAMES:
            raise CompareError(f"unknown metric {name!r} (one of {', '.join(THRESHOLD_NAMES)})")
        if raw.lower() in ("off", "none"):
            out.append((name, None))
            continue
        try:
            value = abs(float(raw))
        except ValueError:
            raise CompareError(f"{name}: expected a number or 'off', got {raw!r}") from None
        if value != value or value == float("inf"):
            raise CompareError(f"{name}: expected a finite number, got {raw!r}")
        out.append((name, value))
    return out


def thresholds_for(kind: str, overrides: Sequence[tuple[str, float | None]] = ()) -> dict[str, float | None]:
    """Each metric of ``kind`` → its tolerated worsening (None: shown, never a regression)."""
    limits: dict[str, float | None] = {m.name: None for m in METRICS.get(kind, ())}
    for name, value in (*DEFAULT_THRESHOLDS, *overrides):
        for metric in METRICS.get(kind, ()):
            if name == metric.name or name in metric.groups:
                limits[metric.name] = value
    return limits


def point_label(point: Mapping[str, Any], index: int) -> str:
    """How a sweep point is matched across runs: ``rate=R`` (open loop), else ``c=N``."""
    rate = point.get("rate")
    if rate not in (None, "", "inf"):
        return f"rate={rate:g}" if isinstance(rate, (int, float)) else f"rate={rate}"
    if point.get("concurrency") not in (None, ""):
        return f"c={point['concurrency']}"
    return f"point{index + 1}"


def points_of(run: RunResult) -> dict[str, Mapping[str, Any]]:
    """The run's points by label (an IO500 run: its metrics as the one point ``run``)."""
    if run.kind == "io500":
        return {"run": run.metrics}
    out: dict[str, Mapping[str, Any]] = {}
    for index, point in enumerate(run.points):
        label = point_label(point.values, index)
        while label in out:  # the same load twice in one sweep: still compared in order
            label += "'"
        out[label] = point.values
    return out


@dataclass(frozen=True)
class Delta:
    """One run's value of a metric at a point, and its change against the baseline."""

    value: float | None
    change: float | None  # % (relative) or the difference (absolute metrics); None without both values
    regressed: bool = False
    # Both runs were repeated (--repeat): True = their 95 % intervals overlap (within noise, never a
    # regression), False = they do not; None = no intervals to tell.
    noise: bool | None = None


@dataclass(frozen=True)
class Row:
    point: str
    metric: Metric
    threshold: float | None
    cells: tuple[Delta, ...]  # one per run; the baseline's change is 0 (or None)


@dataclass(frozen=True)
class Regression:
    run: int  # index into Comparison.runs (>= 1)
    point: str
    metric: str
    change: float
    threshold: float


@dataclass
class Comparison:
    kind: str
    runs: list[RunResult]
    rows: list[Row] = field(default_factory=list)
    regressions: list[Regression] = field(default_factory=list)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The comparison for scripts (``compare --json``)."""
        ids = [r.run_id for r in self.runs]
        return {
            "kind": self.kind, "baseline": ids[0], "runs": ids, "thresholds": self.thresholds,
            "rows": [{"point": row.point, "metric": row.metric.name,
                      "better": "higher" if row.metric.higher_is_better else "lower",
                      "change_unit": "difference" if row.metric.absolute else "percent",
                      "threshold": row.threshold, "values": [c.value for c in row.cells],
                      "changes": [c.change for c in row.cells], "regressed": [c.regressed for c in row.cells],
                      "within_noise": [c.noise for c in row.cells]}
                     for row in self.rows],
            "regressions": [{"run_id": ids[r.run], "point": r.point, "metric": r.metric, "change": r.change,
                             "threshold": r.threshold} for r in self.regressions],
            "notes": self.notes,
        }


def delta(metric: Metric, base: float | None, value: float | None, threshold: float | None) -> Delta:
    """``value`` against ``base``: its change, and whether it is worse than ``threshold`` allows."""
    if base is None or value is None:
        return Delta(value, None)
    diff = value - base
    if metric.absolute:
        change: float | None = diff
    else:  # no percentage of nothing: a baseline of 0 gives no relative change
        change = 100.0 * diff / abs(base) if base else (0.0 if diff == 0 else None)
    if change is None or threshold is None:
        return Delta(value, change)
    worse = -change if metric.higher_is_better else change
    # A hair's tolerance: recall 0.98 -> 0.97 is exactly the 0.01 allowed, not 0.01000000000000001 more.
    return Delta(value, change, worse > threshold + 1e-9 * max(1.0, threshold))


def compare(runs: Sequence[RunResult], overrides: Sequence[tuple[str, float | None]] = ()) -> Comparison:
    """Every run against ``runs[0]``, point by point (same concurrency or rate)."""
    if len(runs) < 2:
        raise CompareError("name at least two runs")
    kind = runs[0].kind
    other = next((r for r in runs if r.kind != kind), None)
    if other is not None:
        raise CompareError(f"runs of different kinds: {runs[0].run_id or 'the first'} is {kind or '?'}, "
                           f"{other.run_id or 'another'} is {other.kind or '?'}")
    if kind not in METRICS:
        raise CompareError(f"cannot compare {kind or 'unknown'} runs (known kinds: {', '.join(METRICS)})")
    result = Comparison(kind, list(runs), thresholds=thresholds_for(kind, overrides))
    tables = [points_of(run) for run in runs]
    labels = list(dict.fromkeys(label for table in tables for label in table))
    for label in labels:
        points = [table.get(label) for table in tables]
        for metric in METRICS[kind]:
            values = [metric.read(p) if p is not None else None for p in points]
            if all(v is None for v in values):
                continue
            limit = result.thresholds[metric.name]
            cells = tuple(_with_noise(delta(metric, values[0], v, limit), points[0], p, metric.name)
                          for v, p in zip(values, points, strict=True))
            result.rows.append(Row(label, metric, limit, cells))
            result.regressions += [Regression(i, label, metric.name, c.change, limit)
                                   for i, c in enumerate(cells) if c.regressed and c.change is not None
                                   and limit is not None]
        missing = [runs[i].run_id for i, p in enumerate(points) if p is None]
        if missing:
            result.notes.append(f"{label} is not in {', '.join(missing)}")
    result.notes += _differences(runs)
    return result


def _with_noise(cell: Delta, base: Mapping[str, Any] | None, point: Mapping[str, Any] | None, name: str) -> Delta:
    """A repeated run's cell: within noise when its interval overlaps the baseline's (then no regression)."""
    from benchctl.bench.repeat import interval_of, overlap

    if base is None or point is None or base is point:
        return cell
    same = overlap(interval_of(base, name), interval_of(point, name))
    if same is None:
        return cell
    return Delta(cell.value, cell.change, cell.regressed and not same, same)


# Configuration keys that say where or how long, not what was measured: a difference there is no caveat.
_NOT_WHAT = frozenset({"url", "api_key_env", "collection", "keep", "grace", "index_timeout", "timeout", "seed",
                       "server_metrics_interval", "concurrency", "concurrency_capped", "rate", "duration",
                       "requests", "max_error_rate", "slo", "prompt_words", "prompt_pad"})


def _differences(runs: Sequence[RunResult]) -> list[str]:
    """Caveats: configurations that differ from the baseline's, and points cut short."""
    notes = []
    base = runs[0]
    for run in runs[1:]:
        keys = sorted(k for k in {*base.config, *run.config}
                      if k not in _NOT_WHAT and base.config.get(k) != run.config.get(k))
        if keys:
            shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            notes.append(f"{run.run_id} was configured differently: {shown}")
    for run in runs:
        cut = [point_label(p.values, i) for i, p in enumerate(run.points) if p.get("interrupted")]
        if cut or run.status != "complete":
            notes.append(f"{run.run_id} is {run.status}" + (f" ({', '.join(cut)} cut short)" if cut else ""))
    return notes


def _sig(value: float) -> float:
    return float(f"{value:.6g}")  # short index lines; six digits are more than any figure's precision


def headline(run: RunResult) -> dict[str, Any]:
    """The figures ``results`` lists for a run: LLM -- the best request throughput and the TTFT p50/p99 at that
    point; vector -- the best QPS and the recall there; IO500 -- the score. {} for other kinds."""
    wanted = {"llm": ("request_throughput", ("ttft_p50", "ttft_p99")), "vector": ("qps", ("recall",)),
              "io500": ("score", ("bandwidth", "iops"))}.get(run.kind)
    if wanted is None:
        return {}
    best_name, beside = wanted
    metrics = {m.name: m for m in METRICS[run.kind]}
    scored = [(v, label, p) for label, p in points_of(run).items()
              if (v := metrics[best_name].read(p)) is not None]
    if not scored:
        return {}
    value, label, point = max(scored, key=lambda s: s[0])
    out: dict[str, Any] = {best_name: _sig(value)}
    if run.kind != "io500":
        out["point"] = label
    for name in beside:
        figure = metrics[name].read(point)
        if figure is not None:
            out[name] = _sig(figure)
    return out


_RUN_REF = re.compile(r"last(?:~(\d+))?")


def nth_newest(word: str) -> int | None:
    """``last`` → 0, ``last~2`` → 2; None for any other word."""
    match = _RUN_REF.fullmatch(word)
    return int(match.group(1) or 0) if match else None


__all__ = ["DEFAULT_THRESHOLDS", "METRICS", "THRESHOLD_NAMES", "CompareError", "Comparison", "Delta", "Metric",
           "Regression", "Row", "compare", "delta", "headline", "nth_newest", "parse_thresholds", "point_label",
           "points_of", "thresholds_for"]
