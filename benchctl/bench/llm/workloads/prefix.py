"""Shared prefixes (``--workload prefix --prefix-tokens P --prefix-groups G``).

Every request starts with one of G shared system prompts of P tokens (sized with the server's tokenizer)
and ends with a unique suffix of ``--input-tokens`` tokens: the first request of a group fills the server's
prefix cache, the others should hit it. The group of request i is a seeded draw (vLLM bench's
``prefix_repetition`` shuffles the same way), so every group is used from the start.

The hit rate is the server's own: vLLM's ``vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total``
(tokens) over the point, from its ``/metrics`` before and after the point (``prefix_cache_stats``) -- shown
beside TTFT. llm-sim keeps a prefix cache with the same counters.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from benchctl.bench.llm import prompts as llm_prompts
from benchctl.bench.llm.backends import BACKENDS
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.stream import RequestResult
from benchctl.bench.llm.workloads import Session, Workload, WorkloadError

# vLLM's names (0.32; checked on its /metrics), and the ``gpu_`` ones of the first V1 releases.
QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")


def _counter(metrics: Mapping[str, float], names: tuple[str, ...]) -> float | None:
    for name in names:  # the first name the server has, summed over its label sets (engines)
        values = [v for k, v in metrics.items() if k.split("{", 1)[0] == name]
        if values:
            return sum(values)
    return None


def prefix_cache_stats(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any] | None:
    """Prefix-cache queries, hits and hit rate (tokens) between two scrapes; None when the server has none."""
    q0, q1 = _counter(before, QUERIES), _counter(after, QUERIES)
    h0, h1 = _counter(before, HITS), _counter(after, HITS)
    if q1 is None or h1 is None:
        return None
    queries, hits = q1 - (q0 or 0.0), h1 - (h0 or 0.0)
    return {"queries": queries, "hits": hits, "hit_rate": hits / queries if queries else None}


def system_prompt(group: int, words: int, pad: int = 0) -> str:
    """Group ``group``'s shared system prompt: its own first word, so groups never share a cache block."""
    return f"sys{group:04d} " + llm_prompts.prompt_text(0, words, pad).split(" ", 1)[-1]


class PrefixSession(Session):
    workload: PrefixWorkload

    def body(self, r: RequestResult) -> dict[str, Any]:
        wl, cfg = self.workload, self.workload.cfg
        group = random.Random(cfg.seed * 1_000_003 + r.index).randrange(cfg.prefix_groups)
        suffix = llm_prompts.prompt_text(r.index, cfg.prompt_words or cfg.input_tokens, cfg.prompt_pad)
        messages = (("system", wl.prefixes[group]), ("user", suffix))
        return BACKENDS[cfg.backend].body(cfg.model, messages, cfg.output_tokens, True)


class PrefixWorkload(Workload):
    name = "prefix"
    scrape_per_point = True

    def __init__(self, cfg: LlmConfig) -> None:
        super().__init__(cfg)
        if cfg.prefix_tokens < 1 or cfg.prefix_groups < 1:
            raise WorkloadError("--prefix-tokens and --prefix-groups must be at least 1")
        self.prefixes: list[str] = []

    async def prepare(self, url: str, headers: dict[str, str]) -> list[str]:
        cfg = self.cfg
        cal = await llm_prompts.calibrate(url, cfg.backend, cfg.model, cfg.prefix_tokens, headers)
        self.prefixes = [system_prompt(g, cal.words, cal.pad) for g in range(cfg.prefix_groups)]
        return [f"prefix: {cfg.prefix_groups} shared system prompts of {cfg.prefix_tokens} tokens ({cal.note}) "
                f"+ unique suffixes of {cfg.input_tokens} tokens"]

    def session(self) -> Session:
        return PrefixSession(self)


WORKLOAD = PrefixWorkload
