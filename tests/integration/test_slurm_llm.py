"""Real Slurm + the LLM simulator: start, wait, benchmark (TTFT/TPOT against the simulator's exact timing) and
stop, from one `benchctl -e` line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm


def test_llm_sim_start_check_bench_stop_on_slurm(slurm_config: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchctl", "-e",
                           "start llm-sim --ttft-ms 50 --itl-ms 10 --output-tokens 64; check llm-sim --wait; "
                           "bench llm-sim --concurrency 1,16 --duration 20 --output-tokens 64; stop llm-sim"],
                          capture_output=True, text=True, timeout=400, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "ready" in out and "stopped llm-sim job" in out and "CANCELLED" in out
    run = json.loads(Path(out.split("results: ", 1)[1].split()[0]).read_text())
    assert run["kind"] == "llm" and run["service"]["name"] == "llm-sim" and run["service"]["job_id"].isdigit()
    assert [p["concurrency"] for p in run["points"]] == [1, 16]
    for p in run["points"]:
        assert p["failed"] == 0 and p["completed"] > 10
        # The simulator's settings, within the client's measured error on this 2-core machine.
        assert abs(p["median_ttft_ms"] - 50) < 10
        assert abs(p["median_tpot_ms"] - 10) < 2
        assert abs(p["median_e2el_ms"] - (50 + 63 * 10)) < 25
    c16 = run["points"][1]
    assert c16["request_throughput"] > 10 * run["points"][0]["request_throughput"]  # 16 users, same latency
    assert run["metrics"]["server_metrics"]  # /metrics deltas were stored
