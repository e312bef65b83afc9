"""Sweep analysis, pure: a run's points as a load curve, the knee of latency vs load, the saturation
throughput, and the highest load that meets an SLO. Every finding says how it was found.

* Knee: Kneedle (Satopää et al., 2011) -- the latency-vs-load curve normalised to the unit square, the knee is
  the point farthest below the chord from the first to the last point, which approximates the point of maximum
  curvature without a second derivative of noisy data. A curve that stays near its chord (flat or straight) has
  no knee, and says so.
* Saturation: the highest throughput reached; the plateau begins at the first point within 5 % of it, provided
  more load was tried after it (otherwise throughput was still rising and the run did not saturate).
* SLO: LLM runs ``ttft:MS,tpot:MS,itl:MS,e2el:MS`` against each point's p99 (``p50_ttft:MS`` for another
  percentile); vector runs ``recall:0.9`` (a floor) and ``latency:MS`` (p99).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from benchctl.report.content import llm_ms

PLATEAU_GAIN = 0.05  # more load adding less throughput than this is the plateau
MIN_KNEE_DISTANCE = 0.1  # how far below its chord (normalised) a curve must bend to have a knee
# Below this relative rise from the lowest to the highest latency the curve is flat: no knee is named.
MIN_KNEE_RISE = 0.10
LLM_SLO_KEYS = ("ttft", "tpot", "itl", "e2el")
APPLIES = {"llm": LLM_SLO_KEYS, "vector": ("recall", "latency")}  # the SLO names each kind's points have


class SloError(ValueError):
    """An ``--slo`` that does not parse; one line."""


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep as the analysis sees it."""

    label: str  # c=8, rate 2/s
    load: float  # concurrency, or the offered request rate
    throughput: float | None  # req/s (LLM) or QPS (vector)
    latency: float | None  # the latency the knee is found on, ms
    values: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Curve:
    """The points of a run in load order, with the names of its axes."""

    kind: str
    load_name: str  # "concurrency" or "request rate"
    throughput_unit: str  # "req/s", "QPS"
    latency_name: str  # "p99 E2EL"
    points: tuple[SweepPoint, ...]


@dataclass(frozen=True)
class Knee:
    index: int
    point: SweepPoint
    distance: float  # how far below the chord, normalised (0..1)


@dataclass(frozen=True)
class Saturation:
    saturated: bool
    best: float  # the highest throughput reached
    index: int  # where the plateau begins (saturated), or the highest point
    point: SweepPoint
    last_gain: float | None  # the gain of the last step (not saturated)


@dataclass(frozen=True)
class Limit:
    """One SLO limit: a figure of a point, at most (or, ``floor``, at least) ``value``."""

    name: str  # ttft, recall, latency
    percentile: str  # p99, p50 ("" for recall)
    value: float
    floor: bool = False

    @property
    def label(self) -> str:
        return self.name if not self.percentile else f"{self.percentile} {self.name.upper()}" \
            if self.name in LLM_SLO_KEYS else f"{self.percentile} {self.name}"

    def describe(self) -> str:
        return f"{self.label} >= {self.value:g}" if self.floor else f"{self.label} <= {self.value:g} ms"


@dataclass(frozen=True)
class SloResult:
    limits: tuple[Limit, ...]
    best: SweepPoint | None  # the highest load meeting every limit
    first_miss: tuple[SweepPoint, list[str]] | None  # the lowest load missing one, and which


def parse_slo(raw: str) -> tuple[Limit, ...]:
    """``ttft:500,tpot:50`` / ``p50_ttft:300`` / ``recall:0.9,latency:20`` -> limits (``SloError`` when bad)."""
    limits = []
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        name, _, value = part.partition(":")
        match = re.fullmatch(r"(?:(p50|p90|p95|p99)_)?([a-z0-9]+)", name.strip().lower())
        if not match or not re.fullmatch(r"\d+(\.\d+)?", value.strip()):
            raise SloError(f"expects NAME:VALUE[,...] (ttft:MS, tpot:MS, itl:MS, e2el:MS, recall:0.9, latency:MS), "
                           f"got {part!r}")
        pct, key, number = match.group(1) or "p99", match.group(2), float(value)
        if key == "recall":
            if number > 1:
                raise SloError(f"recall is a fraction (0..1), got {value}")
            limits.append(Limit("recall", "", number, floor=True))
        elif key in (*LLM_SLO_KEYS, "latency"):
            limits.append(Limit(key, pct, number))
        else:
            raise SloError(f"unknown SLO {key!r} (ttft, tpot, itl, e2el, latency, recall)")
    return tuple(limits)


def limits_of(slo: str | Mapping[str, float] | Sequence[Limit] | None) -> tuple[Limit, ...]:
    """Limits from a spec string, the bench's ``--slo`` dict (``{"ttft": 500.0}``) or limits already parsed."""
    if not slo:
        return ()
    if isinstance(slo, str):
        return parse_slo(slo)
    if isinstance(slo, Mapping):
        return parse_slo(",".join(f"{k}:{v:g}" for k, v in slo.items()))
    return tuple(slo)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
        return None
    return float(value)


def _label(p: Mapping[str, Any], by_rate: bool) -> str:
    return f"rate {p.get('rate'):g}/s" if by_rate else f"c={p.get('concurrency')}"


def curve_of(kind: str, points: Sequence[Mapping[str, Any]]) -> Curve:
    """The run's points as a load curve. Points that measured nothing (interrupted, every request failed) keep
    their throughput (0) but have no latency. Open-loop LLM sweeps (``--rate``) are read against the rate."""
    by_rate = kind == "llm" and bool(points) and all(_num(p.get("rate")) is not None for p in points) \
        and len({p.get("rate") for p in points}) > 1
    out = []
    for p in points:
        load = _num(p.get("rate") if by_rate else p.get("concurrency"))
        if load is None:
            continue
        if kind == "llm":
            throughput = _num(p.get("request_throughput"))
            latency = _num(p.get("p99_e2el_ms")) if p.get("completed") else None
        else:
            throughput = _num(p.get("qps"))
            lat = p.get("latency_ms")
            latency = _num(lat.get("p99")) if isinstance(lat, Mapping) and p.get("requests") else None
        out.append(SweepPoint(_label(p, by_rate), load, throughput, latency, p))
    out.sort(key=lambda s: s.load)
    return Curve(kind, "request rate" if by_rate else "concurrency", "req/s" if kind == "llm" else "QPS",
                 "p99 E2EL" if kind == "llm" else "p99 latency", tuple(out))


def kneedle(xs: Sequence[float], ys: Sequence[float]) -> tuple[int, float] | None:
    """(index, distance) of the knee of an increasing, convex-ish curve; None when it does not bend.

    Both axes are scaled to 0..1 so the answer does not depend on units; the difference ``x - y`` is the
    distance below the diagonal, i.e. below the chord from the first to the last point. Latency is taken as its
    running maximum, so the knee is never the last point and never a dip."""
    if len(xs) < 3 or len(xs) != len(ys):
        return None
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 <= x0 or y1 <= y0 or (y0 > 0 and y1 < y0 * (1 + MIN_KNEE_RISE)):
        return None  # a latency that barely moves has no knee, only noise to normalise into one
    # The non-decreasing envelope: a noisy dip (a latency lower at a higher load) must not read as a bend.
    envelope = list(accumulate(ys, max))
    diffs = [(x - x0) / (x1 - x0) - (y - y0) / (y1 - y0) for x, y in zip(xs, envelope, strict=True)]
    best = max(range(len(diffs)), key=lambda i: diffs[i])
    return (best, diffs[best]) if diffs[best] >= MIN_KNEE_DISTANCE else None


def find_knee(curve: Curve) -> Knee | None:
    """The knee of latency vs load over the points that have a latency."""
    usable = [p for p in curve.points if p.latency is not None]
    found = kneedle([p.load for p in usable], [p.latency for p in usable if p.latency is not None])
    if found is None:
        return None
    index, distance = found
    return Knee(curve.points.index(usable[index]), usable[index], distance)


def saturation(curve: Curve) -> Saturation | None:
    """Where throughput stops growing with load (see the module's docstring)."""
    pts = [p for p in curve.points if p.throughput is not None]
    if not pts:
        return None
    values = [p.throughput for p in pts if p.throughput is not None]
    best = max(values)
    if best <= 0:  # every request of every point failed: nothing saturated, nothing was served
        return None
    first = next(i for i, v in enumerate(values) if v >= best * (1 - PLATEAU_GAIN))
    last = len(values) - 1
    gain = values[last] / values[last - 1] - 1 if last > 0 and values[last - 1] > 0 else None
    saturated = first < last or (gain is not None and gain < PLATEAU_GAIN)
    return Saturation(saturated, best, curve.points.index(pts[first]), pts[first], None if saturated else gain)


def _figure(point: Mapping[str, Any], limit: Limit) -> float | None:
    if limit.name == "recall":
        return _num(next((v for k, v in point.items() if k.startswith("recall@")), None))
    if limit.name == "latency":
        lat = point.get("latency_ms")
        return _num(lat.get(limit.percentile)) if isinstance(lat, Mapping) else None
    return _num(llm_ms(point, limit.percentile, limit.name))


def check_slo(curve: Curve, limits: Sequence[Limit]) -> SloResult:
    """Each point against every limit: the highest load meeting them all, and the next load that misses one
    (or, when none meets them, the lowest load and why it misses)."""
    misses: list[list[str]] = []
    for p in curve.points:
        missed = []
        for limit in limits:
            value = _figure(p.values, limit)
            if value is None:
                missed.append(f"no {limit.label}")
            elif (value < limit.value) if limit.floor else (value > limit.value):
                missed.append(f"{limit.label} {value:.3g}" if limit.floor else f"{limit.label} {value:.0f} ms")
        misses.append(missed)
    met = [i for i, m in enumerate(misses) if not m]
    best = met[-1] if met else None
    after = next((i for i in range(best + 1 if best is not None else 0, len(misses)) if misses[i]), None)
    return SloResult(tuple(limits), curve.points[best] if best is not None else None,
                     (curve.points[after], misses[after]) if after is not None else None)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def knee_line(curve: Curve, knee: Knee | None) -> str:
    method = (f"maximum curvature of {curve.latency_name} vs {curve.load_name} (Kneedle on the normalised, "
              "non-decreasing curve)")
    if knee is None:
        lats = [p.latency for p in curve.points if p.latency is not None]
        if len(lats) < 3:
            why = "too few points"
        elif min(lats) > 0 and max(lats) < min(lats) * (1 + MIN_KNEE_RISE):
            pct = (max(lats) / min(lats) - 1) * 100
            why = f"no bend: latency flat, {pct:.0f} % rise (< {MIN_KNEE_RISE * 100:.0f} %)"
        else:
            why = (f"no bend: latency climbs {_fmt(min(lats))} → {_fmt(max(lats))} ms steadily from the first "
                   "point, with no flat stretch before it")
        return f"knee: none ({why}); method: {method}"
    after = next((p for p in curve.points[knee.index + 1:] if p.latency is not None), None)
    rise = f", {_fmt(after.latency)} ms at {after.label}" if after is not None and after.latency is not None else ""
    lat = knee.point.latency or 0.0
    return f"knee: {knee.point.label} ({curve.latency_name} {_fmt(lat)} ms{rise}); method: {method}"


def saturation_line(curve: Curve, sat: Saturation | None) -> str:
    if sat is None:
        return "saturation: none (no request succeeded)"
    if not sat.saturated:
        gain = f" (+{sat.last_gain * 100:.0f} % at the last step)" if sat.last_gain is not None else ""
        return (f"saturation: not reached; throughput still rising at {sat.point.label}: "
                f"{_fmt(sat.best)} {curve.throughput_unit}{gain}")
    line = (f"saturation: {_fmt(sat.best)} {curve.throughput_unit} from {sat.point.label} "
            f"(more load adds < {PLATEAU_GAIN * 100:.0f} % throughput)")
    last = curve.points[-1]
    if last.throughput is not None and last.throughput < sat.best * (1 - 2 * PLATEAU_GAIN):
        line += f"; it falls to {_fmt(last.throughput)} at {last.label} (overload)"
    return line


def slo_line(curve: Curve, res: SloResult) -> str:
    what = ", ".join(limit.describe() for limit in res.limits)
    if res.best is None:
        miss = f" ({', '.join(res.first_miss[1])} at {res.first_miss[0].label})" if res.first_miss else ""
        return f"SLO {what}: no point meets it{miss}"
    tput = f", {_fmt(res.best.throughput)} {curve.throughput_unit}" if res.best.throughput is not None else ""
    line = f"SLO {what}: met up to {res.best.label}{tput}"
    if res.first_miss is not None:
        p, misses = res.first_miss
        line += f"; missed at {p.label} ({', '.join(misses)})"
    return line


def sweep_summary(result: Any, slo: str | Mapping[str, float] | Sequence[Limit] | None = None) -> list[str]:
    """The sweep analysis of a run as lines: knee, saturation and (with ``slo``, or the LLM run's own ``--slo``)
    the highest load meeting it. [] for a run without a sweep (one point, IO500). ``result``: a ``RunResult``."""
    if result.kind not in ("llm", "vector"):
        return []
    curve = curve_of(result.kind, [p.values for p in result.points])
    limits = limits_of(slo if slo else result.config.get("slo") if result.kind == "llm" else None)
    lines = []
    if len(curve.points) >= 2:
        lines += [knee_line(curve, find_knee(curve)), saturation_line(curve, saturation(curve))]
    wrong = [limit.name for limit in limits if limit.name not in APPLIES[result.kind]]
    if wrong:
        lines.append(f"SLO: {', '.join(wrong)} does not apply to a {result.kind} run "
                     f"(it has {', '.join(APPLIES[result.kind])})")
    elif limits and curve.points:
        lines.append(slo_line(curve, check_slo(curve, limits)))
    return lines


__all__ = ["Curve", "Knee", "Limit", "Saturation", "SloError", "SloResult", "SweepPoint", "check_slo", "curve_of",
           "find_knee", "knee_line", "kneedle", "limits_of", "parse_slo", "saturation", "saturation_line",
           "slo_line", "sweep_summary"]
