"""Shared by the tests/test_workloads_*.py files: one point of a workload against a running llm-sim."""

from __future__ import annotations

from typing import Any

from benchctl import aio
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.loadgen import PointOutcome, point_metrics, run_point
from benchctl.bench.llm.workloads import configure, plan_for


def workload_config(backend: str = "openai", **values: Any) -> LlmConfig:
    """An LlmConfig as ``bench llm`` builds it: the workload options applied and checked."""
    cfg = LlmConfig(backend=backend, model="sim", input_tokens=values.pop("input_tokens", 8),
                    output_tokens=values.pop("output_tokens", 4), grace=5.0, duration=values.pop("duration", 30.0),
                    requests=values.pop("requests", 0), prompts=values.pop("prompts", ""))
    if "rate" in values:
        cfg.rate = values.pop("rate")
    configure(cfg, values)
    return cfg


def run_workload(url: str, cfg: LlmConfig, concurrency: int = 2,
                 rate: float | None = None) -> tuple[PointOutcome, dict[str, Any]]:
    """Prepare the workload (sizes with llm-sim's /tokenize), run one point, return it and its metrics."""
    aio.run(plan_for(cfg).prepare(url, {}))
    outcome = aio.run(run_point(url, cfg, concurrency, rate))
    return outcome, point_metrics(cfg, outcome, concurrency, rate)
