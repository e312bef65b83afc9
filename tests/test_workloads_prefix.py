"""Shared prefixes: the hit rate from the server's counters, llm-sim's prefix cache, and a `bench llm` run whose
point records the server's prefix-cache hit rate beside TTFT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.bench.llm.workloads import WorkloadError
from benchctl.bench.llm.workloads.prefix import prefix_cache_stats, system_prompt
from benchctl.llmsim import SimConfig, running
from benchctl.llmsim.structured import BLOCK, PrefixCache
from tests.workloads_util import run_workload, workload_config


def test_hit_rate_from_counter_deltas() -> None:
    before = {'vllm:prefix_cache_queries_total{engine="0"}': 100.0, 'vllm:prefix_cache_hits_total{engine="0"}': 10.0}
    after = {'vllm:prefix_cache_queries_total{engine="0"}': 300.0, 'vllm:prefix_cache_hits_total{engine="0"}': 160.0,
             'vllm:prefix_cache_queries_total{engine="1"}': 100.0, 'vllm:prefix_cache_hits_total{engine="1"}': 0.0}
    assert prefix_cache_stats(before, after) == {"queries": 300.0, "hits": 150.0, "hit_rate": 0.5}
    old = {"vllm:gpu_prefix_cache_queries_total": 8.0, "vllm:gpu_prefix_cache_hits_total": 2.0}
    assert prefix_cache_stats({}, old) == {"queries": 8.0, "hits": 2.0, "hit_rate": 0.25}
    assert prefix_cache_stats({}, {"vllm:num_requests_running": 1.0}) is None  # a server without the counters
    assert prefix_cache_stats({}, {"vllm:prefix_cache_queries_total": 0.0,
                                   "vllm:prefix_cache_hits_total": 0.0})["hit_rate"] is None


def test_llmsim_prefix_cache_counts_leading_full_blocks() -> None:
    cache = PrefixCache()
    shared = [f"w{i}" for i in range(2 * BLOCK)]
    assert cache.query(shared + ["a"] * BLOCK) == 0
    assert cache.query(shared + ["b"] * BLOCK) == 2 * BLOCK  # the shared blocks hit, the new one does not
    assert cache.query(["x", *shared]) == 0  # a different start: every chained block differs
    assert (cache.queries, cache.hits) == (8 * BLOCK + 1, 2 * BLOCK)


def test_groups_have_distinct_prompts_and_options_are_checked() -> None:
    assert system_prompt(0, 10) != system_prompt(1, 10) and system_prompt(0, 10).split()[1:] == \
        system_prompt(1, 10).split()[1:]
    with pytest.raises(WorkloadError, match="--prefix-tokens is an option of --workload prefix"):
        from benchctl.bench.llm.workloads.options import check_owners

        check_owners({"prefix_tokens": 4}, "default", False)


def test_prefix_run_hits_the_servers_cache() -> None:
    with running(SimConfig(ttft_ms=1, itl_ms=1)) as sim:
        cfg = workload_config(workload="prefix", prefix_tokens=64, prefix_groups=2, requests=20, input_tokens=8)
        outcome, _ = run_workload(sim.url, cfg)
    truth = [r.server_truth for r in outcome.results if r.server_truth]
    hits = [t["prefix_hit_tokens"] for t in truth]
    assert len(hits) == 20 and hits.count(0) <= 2 and max(hits) == 64  # one miss per group, then the prefix hits


def test_llmsim_prefill_cost_makes_cached_prompts_faster() -> None:
    """--prefill-ms-per-1k: TTFT grows with the prompt tokens NOT in the cache, so a shared prefix shows in the
    client's TTFT as on a real server (llm-sim's own truth says how much prefill each request paid)."""
    with running(SimConfig(ttft_ms=1, itl_ms=1, prefill_ms_per_1k=200.0)) as sim:
        cfg = workload_config(workload="prefix", prefix_tokens=512, prefix_groups=1, requests=6, input_tokens=8)
        outcome, _ = run_workload(sim.url, cfg, concurrency=1)
    results = sorted((r for r in outcome.results if r.server_truth), key=lambda r: r.index)
    first, later = results[0], results[1:]
    assert first.server_truth is not None and first.server_truth["prefill_ms"] >= 100  # ~520 uncached tokens
    assert all(r.server_truth is not None and r.server_truth["prefill_ms"] < 10 for r in later)  # only the suffix
    assert first.ttft is not None and all(r.ttft is not None and r.ttft < first.ttft - 0.05 for r in later)


def test_bench_command_records_the_hit_rate(app: App, tmp_path: Path) -> None:
    out = tmp_path / "prefix.json"
    with running(SimConfig(ttft_ms=1, itl_ms=1)) as sim:
        assert app.run_line(f"bench llm --url {sim.url} --model sim --client here --workload prefix --prefix-tokens 64 "
                            f"--prefix-groups 2 --input-tokens 8 --output-tokens 4 --concurrency 2 --requests 16 "
                            f"--output {out}"), app.out.getvalue()  # type: ignore[attr-defined]
    run = json.loads(out.read_text())
    (point,) = run["points"]
    cache = point["prefix_cache"]
    # 16 prompts of 64 + ~8 tokens; each group's first misses, every later one hits its 64-token prefix.
    assert cache["hits"] == 14 * 64 and cache["hit_rate"] > 0.7
    assert run["config"]["workload"] == "prefix" and run["config"]["prefix_groups"] == 2
    assert "prefix hit" in app.out.getvalue() and "server prefix cache" in app.out.getvalue()  # type: ignore[attr-defined]
