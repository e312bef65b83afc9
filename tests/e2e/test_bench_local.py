"""The vector benchmark against a real ChromaDB run by the local executor (no Slurm)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not shutil.which("chroma", path=os.path.dirname(sys.executable)), reason="chromadb not installed")
def test_bench_chroma_local(isolated_env: Path) -> None:
    out_file = isolated_env / "run.json"
    proc = subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", "-e",
                           f"start chroma; bench chroma --n 3000 --dim 32 --queries 50 --concurrency 1,2 "
                           f"--duration 2 --output {out_file}; stop chroma"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(out_file.read_text())
    assert run["service"]["job_id"] == "local-1"
    assert run["metrics"]["ingest"]["count"] == 3000
    assert run["metrics"]["serial"]["queries"] == 50 and run["metrics"]["serial"]["recall@10"] > 0.9
    assert [p["concurrency"] for p in run["points"]] == [1, 2]
    assert all(p["requests"] > 0 and p["errors"] == 0 for p in run["points"])
    # the collection was dropped afterwards (no --keep): a second run may reuse the name
    assert "stopped chroma job local-1: CANCELLED" in proc.stdout
