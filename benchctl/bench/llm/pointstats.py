"""One point's figures from its requests (warm-up excluded): vLLM's whole result record (``vllm_format``)
and benchctl's own keys beside it, the workload's figures (``workloads``), and the client-health warning.
Moved out of ``loadgen``, which re-exports these names."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from benchctl.bench.llm import vllm_format
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.stream import RequestResult
from benchctl.bench.llm.workloads import plan_for
from benchctl.bench.stats import summarize

if TYPE_CHECKING:  # loadgen imports this module: no import back at run time
    from benchctl.bench.llm.loadgen import PointOutcome


def _ms(values: list[float]) -> dict[str, float]:
    return {k: (v * 1000 if k != "count" else v) for k, v in summarize(values).items()}


def point_metrics(cfg: LlmConfig, outcome: PointOutcome, concurrency: int, rate: float | None) -> dict[str, Any]:
    """One point (warm-up requests excluded): vLLM's whole result record (``vllm_format``) and benchctl's own
    keys beside it -- the concurrency/rate, errors by type, token-count source, the client's health."""
    measured = [r for r in outcome.results if cfg.ordinal(r.index) >= cfg.warmup]
    ok = [r for r in measured if r.ok]
    dur = outcome.duration
    out_tokens = sum(r.tokens for r in ok)
    in_tokens = sum(r.prompt_tokens or 0 for r in ok)
    metrics: dict[str, Any] = {
        "completed": len(ok), "failed": len(measured) - len(ok), "duration": dur,
        "request_throughput": len(ok) / dur if dur else 0.0, "output_throughput": out_tokens / dur if dur else 0.0,
        "total_token_throughput": (out_tokens + in_tokens) / dur if dur else 0.0,
        "total_input_tokens": in_tokens, "total_output_tokens": out_tokens,
        "token_source": dict(Counter(r.token_source for r in ok)),
    }
    series = {"ttft": [r.ttft for r in ok if r.ttft is not None],
              "ttft_from_schedule": [r.ttft_scheduled for r in ok if r.ttft_scheduled is not None],
              "tpot": [r.tpot for r in ok if r.tpot is not None],
              "itl": [g for r in ok for g in r.itl],
              "e2el": [r.e2el for r in ok if r.e2el is not None]}
    for name, values in series.items():
        stats = _ms(values)
        for key, value in stats.items():
            if key == "count":
                continue
            label = {"p50": "median"}.get(key, key)
            metrics[f"{label}_{name}_ms"] = value
            if key == "p50":
                metrics[f"p50_{name}_ms"] = value
    if cfg.slo:
        good = [r for r in ok if all(
            (getattr(r, key) or 0.0) * 1000 <= limit for key, limit in cfg.slo.items())]
        metrics["request_goodput"] = len(good) / dur if dur else 0.0
    metrics["error_counts"] = dict(Counter(r.error_type for r in measured if not r.ok))
    timed = [r.server_timing for r in ok if r.server_timing]
    if timed:  # Ollama's own view of each request: TTFT minus its prefill is queueing, loading and network
        metrics["server_timing_ms"] = {key: summarize([t[key] for t in timed if key in t])
                                       for key in sorted({k for t in timed for k in t})}
    metrics.update(plan_for(cfg).point_metrics(measured, outcome.t0))  # validity rate, TTFT per turn, ...
    metrics["peak_in_flight"] = max_in_flight(measured)
    metrics["warmup_excluded"] = len(outcome.results) - len(measured)
    metrics.update({"concurrency": concurrency, "rate": rate})
    metrics.update(vllm_format.point_record(cfg, metrics, measured, concurrency, rate))
    dispatch = [max(0.0, r.sent - r.scheduled) for r in measured if r.sent]
    metrics["client_health"] = {
        "dispatch_lag_ms": _ms(dispatch), "event_loop_lag_ms": _ms(outcome.loop_lag),
        "client_cpu_percent": 100.0 * outcome.cpu_seconds / dur if dur else 0.0,
        "stopped_early": outcome.stopped_early,
        "unreachable": outcome.unreachable,
    }
    return metrics


def max_in_flight(results: list[RequestResult]) -> int:
    """The most requests in flight at once (sent, not yet ended), failed ones included: benchctl's
    ``peak_in_flight`` (vLLM's ``max_concurrent_requests`` counts successful requests per 1-s bucket)."""
    events = sorted([(r.sent, 1) for r in results if r.sent] + [(r.end, -1) for r in results if r.sent and r.end])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def client_limited(metrics: dict[str, Any]) -> str:
    """A warning when the client, not the server, may have limited the run."""
    health = metrics["client_health"]
    lag = health["dispatch_lag_ms"].get("p99", 0.0)
    # A run of a few requests is mostly start-up (imports, the first connection): its CPU share says nothing.
    if metrics.get("duration", 0.0) < 2.0 or metrics.get("completed", 0) + metrics.get("failed", 0) < 20:
        return ""
    if health["client_cpu_percent"] > 85:
        return f"the client used {health['client_cpu_percent']:.0f}% of a core: it may limit this run"
    if lag > 20:
        return f"requests left the client up to {lag:.0f} ms late (p99): it may limit this run"
    return ""


__all__ = ["client_limited", "max_in_flight", "point_metrics"]
