"""Real Slurm, two nodes: the benchmark client as a job of its own (`bench --client job`), one task on each node,
and as local processes (`--client here --client-tasks 2`). The merged request count must equal what the simulator
itself served (its vllm:request_success_total), and the merged percentiles those of the union of the records."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchctl.bench.client.records import parse_lines
from benchctl.bench.stats import percentile

pytestmark = pytest.mark.slurm


def benchctl(line: str, timeout: float = 400) -> str:
    proc = subprocess.run([sys.executable, "-m", "benchctl", "-e", line], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def served(out: str) -> list[int]:
    """The simulator's request_success_total deltas of each run, from run.json's server_metrics."""
    counts = []
    for path in re.findall(r"results: (\S+run\.json)", out):
        metrics = json.loads(Path(path).read_text())["metrics"]["server_metrics"]
        counts.append(int(sum(v for k, v in metrics.items() if k.startswith("vllm:request_success_total"))))
    return counts


def test_client_job_on_two_nodes_and_local_tasks(slurm_config: Path) -> None:
    out = benchctl("start llm-sim --ttft-ms 20 --itl-ms 2 --output-tokens 8; check llm-sim --wait; "
                   "bench llm-sim --client job --client-tasks 2 --client-nodes 2 --concurrency 4 --duration 4 "
                   "--output-tokens 8; "
                   "bench llm-sim --client here --client-tasks 2 --rate 40 --duration 3 --output-tokens 8; "
                   "stop llm-sim")
    runs = [json.loads(Path(p).read_text()) for p in re.findall(r"results: (\S+run\.json)", out)]
    assert len(runs) == 2, out
    job_run, here_run = runs
    assert "submitted the client as job" in out
    # One task on each node of the two-node cluster.
    assert job_run["client"]["where"] == "job" and job_run["client"]["job_id"].isdigit()
    assert sorted(t["node"] for t in job_run["client_health"]["tasks"]) == ["n1", "n2"]
    assert here_run["client"] == {**here_run["client"], "where": "here", "tasks": 2}
    # The merged count is what the simulator served (its own counter, deltas over each run).
    for run, count in zip(runs, served(out), strict=True):
        point = run["points"][0]
        assert point["failed"] == 0 and point["completed"] > 50
        assert point["completed"] == count
        assert point["client_tasks"] == 2 and len(point["client_health"]["tasks"]) == 2
        # The merged percentiles are those of the union of the tasks' records.
        folder = Path(run["client"]["folder"])
        records = [r for i in range(2) for r in parse_lines((folder / f"requests-{i}.jsonl").read_text())]
        assert {r["task"] for r in records} == {0, 1} and len(records) == count
        ttft = sorted(r["chunks"][0] - r["sent"] for r in records)
        assert point["p99_ttft_ms"] == pytest.approx(1000 * percentile(ttft, 99))
        assert point["median_ttft_ms"] == pytest.approx(1000 * percentile(ttft, 50))
        assert abs(point["median_ttft_ms"] - 20) < 10
    job_requests = Path(re.findall(r"results: (\S+run\.json)", out)[0]).parent / "requests.jsonl"
    assert sum(1 for _ in job_requests.open()) == job_run["points"][0]["completed"]
    # The client job is tracked like any job, and ended well.
    assert job_run["points"][0]["client_health"]["tasks"][0]["users"] == 2
