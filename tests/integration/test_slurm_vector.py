"""Real Slurm + real ChromaDB: `start chroma; bench chroma ...; stop chroma` from one `benchctl -e` line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm


def test_start_bench_stop_chroma_on_slurm(slurm_config: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchctl", "-e",
                           "start chroma; bench chroma --n 20000 --dim 128 --concurrency 1,4 --duration 10; "
                           "stop chroma"], capture_output=True, text=True, timeout=400, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "chroma:" in out and " ready" in out  # bench waited for readiness itself
    assert "ingest: 20000 vectors" in out and "vectors/s" in out
    assert "concurrency 1" in out and "concurrency 4" in out and "recall@10" in out
    assert "stopped chroma job" in out and "CANCELLED" in out
    run_json = Path(out.split("results: ", 1)[1].split()[0])
    run = json.loads(run_json.read_text())
    assert run["kind"] == "vector" and run["service"]["name"] == "chroma" and run["service"]["job_id"].isdigit()
    assert run["metrics"]["ingest"]["count"] == 20000
    assert run["metrics"]["serial"]["recall@10"] > 0.9  # HNSW on clustered data at ef 100
    assert [p["concurrency"] for p in run["points"]] == [1, 4]
    for point in run["points"]:
        assert point["qps"] > 10 and point["errors"] == 0 and point["recall@10"] > 0.9
    assert (run_json.parent / "summary.csv").exists()
    assert sum(1 for _ in (run_json.parent / "requests.jsonl").open()) > 200
