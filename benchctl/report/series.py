"""Time series and distributions of a run, read from its folder: the per-request records (``requests.jsonl``) on
one time axis for the whole sweep, and the server's timeline (``server_metrics.jsonl``) as figures over time.
Pure (no matplotlib, no rich): the PNG plots and the terminal sparklines draw the same numbers.

The time axis is the sampler's (seconds since the run's first scrape) when the run has a server timeline, so
client and server curves line up; otherwise the points are laid end to end by their measured durations.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson

from benchctl.bench.results import RunResult
from benchctl.bench.timeline import FAMILIES, TIMELINE_FILE, counter_rate, pooled

MAX_RECORDS = 2_000_000  # a bound on memory for a pathological file; a real sweep is far below it


@dataclass
class PointRequests:
    """One sweep point's successful requests: when each was sent (s on the run's axis) and what it measured."""

    label: str
    offset: float  # where the point starts on the run's axis, s
    duration: float
    sent: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)  # completion times, s on the run's axis
    latency_ms: list[float] = field(default_factory=list)  # E2EL (LLM) or query latency (vector)
    ttft_ms: list[float] = field(default_factory=list)  # LLM only
    tokens: list[float] = field(default_factory=list)  # output tokens per request (LLM)
    failed: int = 0


def run_dir(run: RunResult) -> Path | None:
    return run.path.parent if run.path is not None else None


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; damaged lines (a run killed mid-write) are skipped."""
    try:
        fh = path.open("rb")
    except OSError:
        return
    with fh:
        for n, line in enumerate(fh):
            if n >= MAX_RECORDS:
                return
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict):
                yield data


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _window_start(p: Mapping[str, Any]) -> float | None:
    t = p.get("server_timeline")
    window = t.get("window_s") if isinstance(t, Mapping) else None
    return _num(window[0]) if isinstance(window, list) and window else None


def _record_label(kind: str, p: Mapping[str, Any]) -> str:
    """The label a point's records carry (``point`` of an LLM record: a workload's own name for its point, e.g.
    a ramp's or a trace's; a vector record has its concurrency)."""
    if kind == "llm" and p.get("workload_label"):
        return str(p["workload_label"])
    rate = p.get("rate")
    if kind == "llm" and isinstance(rate, (int, float)):
        return f"rate {rate:g}/s"
    return f"concurrency {p.get('concurrency')}"


def point_requests(run: RunResult) -> list[PointRequests]:
    """Each point's requests on the run's time axis (empty lists when requests.jsonl is missing)."""
    folder = run_dir(run)
    points: dict[str, PointRequests] = {}
    cursor = 0.0
    for point in run.points:
        p = point.values
        duration = _num(p.get("duration")) or _num(p.get("duration_s")) or 0.0
        start = _window_start(p)
        offset = start if start is not None else cursor
        cursor = offset + duration
        label = _record_label(run.kind, p)
        points.setdefault(label, PointRequests(label, offset, duration))
    if folder is None or run.kind not in ("llm", "vector"):
        return list(points.values())
    first_t: dict[str, float] = {}
    for r in iter_records(folder / "requests.jsonl"):
        if run.kind == "llm":
            label, rel = str(r.get("point", "")), _num(r.get("sent_ms"))
            rel = rel / 1000 if rel is not None else None
        else:
            if r.get("phase") != "sweep":
                continue
            label, t = f"concurrency {r.get('concurrency')}", _num(r.get("t"))
            rel = None if t is None else t - first_t.setdefault(label, t)  # perf_counter: relative to the first
        pr = points.get(label)
        if pr is None or rel is None:
            continue
        if not r.get("ok"):
            pr.failed += 1
            continue
        lat = _num(r.get("e2el_ms") if run.kind == "llm" else r.get("latency_ms"))
        if lat is None:
            continue
        pr.sent.append(pr.offset + rel)
        pr.latency_ms.append(lat)
        pr.done.append(pr.offset + rel + lat / 1000)  # both kinds record when the request was sent
        if run.kind == "llm":
            pr.ttft_ms.append(_num(r.get("ttft_ms")) or 0.0)
            pr.tokens.append(_num(r.get("output_tokens")) or 0.0)
    return list(points.values())


def bucket_width(span: float) -> float:
    """Seconds per bucket of a rate over time: about 60 buckets, at least 1 s (a closed loop's requests finish in
    waves; shorter buckets show the waves as a saw-tooth, not the throughput), at most 10 s."""
    return min(10.0, max(1.0, span / 60))


def rate_over_time(times: Sequence[float], weights: Sequence[float] | None, width: float, start: float,
                   end: float) -> tuple[list[float], list[float]]:
    """Events per second (or weight per second) in buckets of ``width`` s over [start, end]: (centres, rates).
    The last bucket is divided by the time it covers, and left out under half a bucket (a few stragglers
    there would read as a collapse of throughput)."""
    count = max(1, math.ceil((end - start) / width))
    sums = [0.0] * count
    for i, t in enumerate(times):
        k = min(count - 1, int((t - start) // width))
        if k >= 0:
            sums[k] += weights[i] if weights is not None else 1.0
    spans = [width] * count
    spans[-1] = end - start - (count - 1) * width
    if count > 1 and spans[-1] < width / 2:
        count -= 1
    return ([start + (k + 0.5) * width for k in range(count)],
            [sums[k] / spans[k] if spans[k] > 0 else 0.0 for k in range(count)])


def mean_over_time(samples: Sequence[tuple[float, float]], width: float, start: float, end: float) -> list[float]:
    """The mean of the (t, value) samples in each bucket of ``width`` s over [start, end); an empty bucket keeps
    the previous bucket's value (a gauge holds between scrapes)."""
    count = max(1, math.ceil((end - start) / width))
    sums, counts = [0.0] * count, [0] * count
    for t, v in samples:
        k = int((t - start) // width)
        if 0 <= k < count:
            sums[k] += v
            counts[k] += 1
    out, last = [], 0.0
    for total, n in zip(sums, counts, strict=True):
        last = total / n if n else last
        out.append(last)
    return out


def ecdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The empirical CDF: sorted values and the fraction of values at or below each."""
    data = sorted(values)
    n = len(data)
    return data, [(i + 1) / n for i in range(n)]


@dataclass
class ServerSeries:
    """The server's figures over time (s on the run's axis): gauges as sampled, counters as rates."""

    family: str
    series: dict[str, list[tuple[float, float]]]  # figure key -> (t, value)
    headers: dict[str, str]  # figure key -> its label


def server_series(run: RunResult, target: str = "server") -> ServerSeries | None:
    """The summarised figures of the run's server timeline; None when the run has none."""
    status = run.extra.get("server_timeline")
    folder = run_dir(run)
    family = FAMILIES.get(str(status.get("family", ""))) if isinstance(status, Mapping) else None
    if family is None or folder is None or not (folder / TIMELINE_FILE).is_file():
        return None
    raw: dict[str, list[tuple[float, float]]] = {f.key: [] for f in family.figures}
    for r in iter_records(folder / TIMELINE_FILE):
        t, values = _num(r.get("elapsed")), r.get("values")
        if r.get("target", "server") != target or t is None or not isinstance(values, dict):
            continue
        for key, value in pooled(values, family.figures).items():
            raw[key].append((t, value))
    out: dict[str, list[tuple[float, float]]] = {}
    for fig in family.figures:
        samples = raw[fig.key]
        if fig.counter:  # each step's rate, placed at its end
            samples = [(b[0], rate) for a, b in pairwise(samples) if (rate := counter_rate([a, b])) is not None]
        if samples:
            out[fig.key] = samples
    if not out:
        return None
    return ServerSeries(family.name, out, {f.key: f.header for f in family.figures})


__all__ = ["PointRequests", "ServerSeries", "bucket_width", "ecdf", "iter_records", "mean_over_time", "point_requests",
           "rate_over_time", "run_dir", "server_series"]
