"""Rate ramps (``--ramp linear|exponential --ramp-from R0 --ramp-to R1``) and per-second figures.

A ramp is an open loop whose rate r(t) moves from R0 to R1 over the point's ``--duration`` T: linearly
(``R0 + (R1 - R0) t / T``) or exponentially (``R0 (R1 / R0) ** (t / T)``, as vLLM bench's ramp-up). The
arrival times come from the time-rescaling theorem: arrivals u_k of a unit-rate process (``--arrival``:
constant k, Poisson, or gamma with ``--burstiness``) mapped through the inverse of Lambda(t) = integral of r,
so at every moment the arrivals have the ramp's rate and the process's shape -- precomputed and seeded.

``per_second`` turns a point's requests into one row per second (requests sent, completed, failed, TTFT p50
and p99 of those sent in that second, the target rate), so the rate at which TTFT or errors start to climb
is visible in the results.
"""

from __future__ import annotations

import math
import random
from typing import Any

from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.stream import RequestResult
from benchctl.bench.stats import percentile

MAX_ARRIVALS = 1_000_000


def rate_at(cfg: LlmConfig, t: float) -> float:
    """The ramp's target rate (requests/s) at ``t`` seconds into the point."""
    frac = min(max(t / cfg.duration, 0.0), 1.0) if cfg.duration else 1.0
    if cfg.ramp == "exponential":
        return float(cfg.ramp_from * (cfg.ramp_to / cfg.ramp_from) ** frac)
    return cfg.ramp_from + (cfg.ramp_to - cfg.ramp_from) * frac


def _inverse(cfg: LlmConfig, u: float) -> float | None:
    """The time t with Lambda(t) = u (None: the ramp never gets there)."""
    r0, r1, span = cfg.ramp_from, cfg.ramp_to, cfg.duration
    if u <= 0:
        return 0.0
    if cfg.ramp == "exponential" and r0 != r1:
        k = math.log(r1 / r0)
        arg = 1.0 + u * k / (r0 * span)
        return span / k * math.log(arg) if arg > 0 else None
    a = (r1 - r0) / (2.0 * span)  # Lambda(t) = r0 t + a t^2
    disc = r0 * r0 + 4.0 * a * u
    if disc < 0:
        return None
    denom = r0 + math.sqrt(disc)  # the stable root: no cancellation when a is tiny
    return 2.0 * u / denom if denom > 0 else None


def ramp_offsets(cfg: LlmConfig) -> list[float]:
    """Arrival times (s after the point's start) of the ramp over ``cfg.duration`` seconds."""
    rng = random.Random(cfg.seed)
    out: list[float] = []
    u = 0.0
    while len(out) < MAX_ARRIVALS:
        t = _inverse(cfg, u)
        if t is None or t >= cfg.duration:
            break
        out.append(t)
        if cfg.arrival == "constant":
            u += 1.0
        elif cfg.arrival == "poisson":
            u += rng.expovariate(1.0)
        else:
            u += rng.gammavariate(cfg.burstiness, 1.0 / cfg.burstiness)
    return out


def per_second(measured: list[RequestResult], t0: float | None, cfg: LlmConfig) -> list[dict[str, Any]]:
    """One row per second of the point: requests due (sent), completed and failed (by when they ended),
    TTFT p50/p99 (ms) of the requests due in that second, and the ramp's target rate."""
    if not measured or t0 is None:
        return []
    last = max(max(r.end, r.scheduled) for r in measured)
    n = max(1, math.ceil(last - t0))
    sent, done, failed = [0] * n, [0] * n, [0] * n
    ttft: list[list[float]] = [[] for _ in range(n)]
    for r in measured:  # one pass: a long trace has many seconds and many requests
        s = min(n - 1, max(0, int(r.scheduled - t0)))
        sent[s] += 1
        if r.ok and r.ttft is not None:
            ttft[s].append(r.ttft * 1000)
        if r.end:
            e = min(n - 1, max(0, int(r.end - t0)))
            (done if r.ok else failed)[e] += 1
    rows: list[dict[str, Any]] = []
    for s in range(n):
        values = sorted(ttft[s])
        row: dict[str, Any] = {"second": s, "sent": sent[s], "completed": done[s], "errors": failed[s],
                               "ttft_p50_ms": round(percentile(values, 50), 2) if values else None,
                               "ttft_p99_ms": round(percentile(values, 99), 2) if values else None}
        if cfg.ramp:
            row["target_rate"] = round(rate_at(cfg, s + 0.5), 3)
        rows.append(row)
    return rows

__all__ = ["per_second", "ramp_offsets", "rate_at"]
