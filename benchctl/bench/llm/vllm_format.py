"""The LLM run JSON next to vLLM's own ``vllm bench serve`` result file, so that tools written for one read the
other and get the same numbers.

Each sweep point carries vLLM's whole result record (``vllm/benchmarks/serve.py``: ``date``, ``endpoint_type``,
``backend``, ``label``, ``model_id``, ``tokenizer_id``, ``num_prompts``, ``request_rate``, ``burstiness``,
``max_concurrency``, ``duration``, ``completed``, ``failed``, token totals, throughputs, ``request_goodput``,
``latencies``, ``queue_times``, ``errors``, ``max_output_tokens_per_s``, ``max_concurrent_requests`` and the
``mean/median/std/pNN_{ttft,tpot,itl,e2el}_ms`` statistics); the top level of run.json repeats the record of one
point and says which (``top_level_point``). Keys with vLLM's names mean what vLLM means by them. Where benchctl
measures differently on purpose (TTFT skips chat's role-only chunk, empty chunks are not ITL gaps), its values
keep the vLLM names -- they are the better measure -- and the values by vLLM's client definitions are written
beside them (``vllm_client_definitions``) whenever they differ; ``definitions`` in run.json says each difference.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from benchctl.bench.stats import summarize

if TYPE_CHECKING:
    from benchctl.bench.llm.config import LlmConfig
    from benchctl.bench.llm.stream import RequestResult

DEFINITIONS: dict[str, str] = {
    "ttft": "first chunk carrying content, reasoning or tool calls, minus the time the request was sent. vLLM's "
            "client takes the first chunk with any choices, so a chat endpoint's role-only chunk counts there.",
    "itl": "gaps between consecutive token-carrying chunks. vLLM's client takes the gaps between all chunks with "
           "choices, role-only and empty-delta chunks included.",
    "e2el": "last token-carrying chunk minus send time (vLLM: last chunk with choices; the usage chunk and [DONE] "
            "move neither).",
    "tpot": "(last - first token-carrying chunk) / (output tokens - 1), for requests of more than one token "
            "(vLLM: (latency - ttft) / (output tokens - 1) with its own ttft and latency).",
    "vllm_client_definitions": "the statistics of ttft/tpot/itl/e2el computed by vLLM's client definitions, "
                               "written only for the metrics where they differ from benchctl's",
    "num_prompts": "as vLLM: the number of requests asked for (--requests); with --duration, the number issued",
    "max_concurrency": "as vLLM's --max-concurrency: the closed loop's users (a closed loop is vLLM's "
                       "--request-rate inf with --max-concurrency N), an open loop's --concurrency cap, or null",
    "max_concurrent_requests": "as vLLM 0.32's serve.py: the most successful requests active within one "
                               "1-second bucket. benchctl's instantaneous peak over all requests is peak_in_flight.",
    "max_output_tokens_per_s": "as vLLM 0.32's serve.py: the most chunks of successful requests arriving within "
                               "one 1-second bucket",
    "latencies": "per request, vLLM's latency: last chunk with choices minus start (0 for a failed request)",
    "queue_times": "per request, from its scheduled start to its send: client-side waiting (an open loop's "
                   "--concurrency cap, the event loop's lag)",
    "errors": "per request, the error text ('' for a success), as vLLM writes it; the counts by type are "
              "error_counts",
    "request_goodput": "requests/s meeting every --slo limit; null without --slo (as vLLM)",
}

_STAT_METRICS = ("ttft", "tpot", "itl", "e2el")


def _stats(name: str, values: Sequence[float], percentiles: Sequence[str]) -> dict[str, float]:
    """vLLM's statistic keys for ``name`` (values in seconds; written in ms). vLLM writes 0 for no values."""
    s = summarize(values)
    if not s.get("count"):
        return {f"{stat}_{name}_ms": 0.0 for stat in ("mean", "median", "std", *percentiles)}
    out = {f"mean_{name}_ms": s["mean"] * 1000, f"median_{name}_ms": s["p50"] * 1000, f"std_{name}_ms": s["std"] * 1000}
    out.update({f"{p}_{name}_ms": s[p] * 1000 for p in percentiles if p in s})
    return out


def vllm_view(r: RequestResult) -> tuple[float | None, list[float], float]:
    """(ttft, itl gaps, latency) of one request by vLLM's client definitions (every chunk with choices)."""
    times = r.choice_times or r.chunk_times
    if not times or not r.sent:
        return None, [], 0.0
    return times[0] - r.sent, [b - a for a, b in itertools.pairwise(times)], times[-1] - r.sent


def vllm_definition_stats(ok: Sequence[RequestResult], ours: dict[str, Any],
                          percentiles: Sequence[str]) -> dict[str, float]:
    """The ttft/tpot/itl/e2el statistics by vLLM's client definitions, for the metrics where they differ."""
    ttfts, itls, e2els, tpots = [], [], [], []
    for r in ok:
        ttft, gaps, latency = vllm_view(r)
        if ttft is None:
            continue
        ttfts.append(ttft)
        itls += gaps
        e2els.append(latency)
        if r.tokens > 1:
            tpots.append((latency - ttft) / (r.tokens - 1))
    out: dict[str, float] = {}
    for name, values in zip(_STAT_METRICS, (ttfts, tpots, itls, e2els), strict=True):
        theirs = _stats(name, values, percentiles)
        if any(not math.isclose(v, ours.get(k, math.nan), rel_tol=1e-9, abs_tol=1e-9) for k, v in theirs.items()):
            out.update(theirs)
    return out


def per_second_peaks(ok: Sequence[RequestResult]) -> tuple[float, int]:
    """vLLM's ``max_output_tokens_per_s`` and ``max_concurrent_requests``: 1-second buckets from the first
    successful request's start; a request counts in every bucket from its start to its end, a chunk in the
    bucket it arrived in."""
    timed = [(r, vllm_view(r)) for r in ok if r.sent]
    timed = [(r, view) for r, view in timed if view[0] is not None]
    if not timed:
        return 0.0, 0
    start = min(r.sent for r, _ in timed)
    end = max(r.sent + view[2] for r, view in timed)
    buckets = math.ceil(end - start) + 1
    tokens, active = [0] * buckets, [0] * buckets
    for r, (_, _, latency) in timed:
        for t in r.choice_times or r.chunk_times:
            second = int(t - start)
            if 0 <= second < buckets:
                tokens[second] += 1
        for second in range(int(r.sent - start), int(r.sent + latency - start) + 1):
            active[second] += 1
    return float(max(tokens)), max(active)


def point_record(cfg: LlmConfig, point: dict[str, Any], measured: Sequence[RequestResult],
                 concurrency: int, rate: float | None) -> dict[str, Any]:
    """vLLM's keys for one sweep point, to merge into the point (benchctl's own keys stay beside them)."""
    ok = [r for r in measured if r.ok]
    closed = rate is None
    max_concurrency = concurrency if closed or cfg.concurrency_capped else None
    record: dict[str, Any] = {
        "date": time.strftime("%Y%m%d-%H%M%S"), "endpoint_type": cfg.backend, "backend": cfg.backend,
        "label": cfg.backend, "model_id": cfg.model, "tokenizer_id": cfg.model,
        "num_prompts": cfg.requests or len(measured),
        "request_rate": "inf" if closed else rate, "burstiness": cfg.burstiness, "max_concurrency": max_concurrency,
        "request_goodput": point.get("request_goodput") if cfg.slo else None,
        "latencies": [vllm_view(r)[2] if r.ok else 0.0 for r in measured],
        "queue_times": [max(0.0, r.sent - r.scheduled) if r.sent else 0.0 for r in measured],
        "errors": [("" if r.ok else r.error or r.error_type) for r in measured],
    }
    record["max_output_tokens_per_s"], record["max_concurrent_requests"] = per_second_peaks(ok)
    if max_concurrency is not None:  # vLLM adds the client-side queueing statistics under a concurrency cap
        waits = [max(0.0, r.sent - r.scheduled) for r in ok]
        record.update(_stats("client_queue_time", waits, ("p99",)))
    percentiles = sorted({k.split("_", 1)[0] for k in point if k.startswith("p") and k.endswith("_ttft_ms")})
    differ = vllm_definition_stats(ok, point, percentiles)
    if differ:
        record["vllm_client_definitions"] = differ
    return record


# The keys of one point's record repeated at the top level of run.json (vLLM's whole result record).
def top_level(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The top level of run.json: the record of the last sweep point (the highest load), and which it is."""
    if not points:
        return {}
    index = len(points) - 1
    point = points[index]
    concurrency, rate = point.get("concurrency"), point.get("rate")
    where = f"rate {rate:g}/s" if rate is not None else f"concurrency {concurrency}"
    # benchctl's own per-point keys (the server's timeline summary: the top level's server_timeline is the run's)
    skip = {"concurrency", "rate", "client_health", "interrupted", "warmup_excluded", "server_timing_ms",
            "server_timeline"}
    return {**{k: v for k, v in point.items() if k not in skip}, "top_level_point": index,
            "top_level_describes": f"points[{index}] ({where}), the last point of the sweep",
            "token_count_source": point.get("token_source", {}),
            "definitions": DEFINITIONS}
