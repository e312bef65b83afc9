"""Ramps: the arrival schedule's rate follows the ramp (time rescaling, exact for constant arrivals), per-second
figures, option checks, and a ramped `bench llm` run against llm-sim."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.bench.llm.stream import RequestResult
from benchctl.bench.llm.workloads import WorkloadError
from benchctl.bench.llm.workloads.ramp import per_second, ramp_offsets, rate_at
from benchctl.llmsim import SimConfig, running
from tests.workloads_util import workload_config


def test_linear_and_exponential_schedules() -> None:
    cfg = workload_config(ramp="linear", ramp_from=2, ramp_to=10, duration=10, arrival="constant")
    cfg.arrival = "constant"
    offsets = ramp_offsets(cfg)
    assert len(offsets) == 60  # the integral of the rate: (2 + 10) / 2 * 10
    for k, t in enumerate(offsets):  # Lambda(t_k) = k exactly
        assert 2 * t + 0.4 * t * t == pytest.approx(k)
    first, last = sum(t < 1 for t in offsets), sum(t >= 9 for t in offsets)
    assert (first, last) == (3, 9) and rate_at(cfg, 5) == 6
    down = workload_config(ramp="linear", ramp_from=10, ramp_to=0, duration=4)
    down.arrival = "constant"
    assert len(ramp_offsets(down)) == 20 and ramp_offsets(down) == sorted(ramp_offsets(down))
    exp = workload_config(ramp="exponential", ramp_from=1, ramp_to=16, duration=8)
    exp.arrival = "constant"
    offsets = ramp_offsets(exp)
    total = 8 / math.log(16) * 15  # integral of 2 ** (t / 2) over 8 s
    assert len(offsets) == math.ceil(total)
    assert rate_at(exp, 4) == pytest.approx(4.0)
    poisson = workload_config(ramp="linear", ramp_from=5, ramp_to=50, duration=20, seed=3)
    assert ramp_offsets(poisson) == ramp_offsets(poisson) and abs(len(ramp_offsets(poisson)) - 550) < 80


def test_option_checks() -> None:
    with pytest.raises(WorkloadError, match="leave out --rate"):
        workload_config(ramp="linear", rate=[3.0])
    with pytest.raises(WorkloadError, match="above 0"):
        workload_config(ramp="exponential", ramp_from=0)
    cfg = workload_config(ramp="linear", workload="prefix")
    assert cfg.concurrency == [1024] and not cfg.concurrency_capped


def test_per_second_rows() -> None:
    cfg = workload_config(ramp="linear", ramp_from=1, ramp_to=3, duration=2)

    def req(i: int, at: float, ttft: float, ok: bool = True) -> RequestResult:
        r = RequestResult(index=i, scheduled=100 + at, sent=100 + at, end=100 + at + 0.5, ok=ok)
        r.chunk_times = [r.sent + ttft] if ok else []
        return r

    rows = per_second([req(0, 0.1, 0.01), req(1, 0.7, 0.03), req(2, 1.2, 0.02, ok=False)], 100.0, cfg)
    assert [(r["sent"], r["completed"], r["errors"]) for r in rows] == [(2, 1, 0), (1, 1, 1)]
    assert rows[0]["ttft_p50_ms"] == pytest.approx(20.0) and rows[1]["ttft_p50_ms"] is None
    assert rows[0]["target_rate"] == 1.5


def test_ramped_bench_run(app: App, tmp_path: Path) -> None:
    out = tmp_path / "ramp.json"
    with running(SimConfig(ttft_ms=1, itl_ms=1)) as sim:
        assert app.run_line(f"bench llm --url {sim.url} --model sim --client here --ramp linear --ramp-from 4 "
                            f"--ramp-to 20 --arrival constant --duration 3 --output-tokens 4 --input-tokens 8 "
                            f"--output {out}"), app.out.getvalue()  # type: ignore[attr-defined]
    (point,) = json.loads(out.read_text())["points"]
    rows = point["per_second"]
    assert point["workload_label"] == "ramp 4->20/s" and point["completed"] == 36  # (4 + 20) / 2 * 3
    # Lambda(1) = 6.7, Lambda(2) = 18.7, Lambda(3) = 36: arrivals k = 0..6, 7..18, 19..35
    assert [r["sent"] for r in rows][:3] == [7, 12, 17] and all(r["errors"] == 0 for r in rows)
    assert "per second: sent 7 12 17" in app.out.getvalue()  # type: ignore[attr-defined]
