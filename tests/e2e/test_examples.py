"""The shipped examples run as users would run them: the lifecycle script on the local executor with a
real ChromaDB, and the recipe through `start --dry-run`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not shutil.which("chroma", path=os.path.dirname(sys.executable)), reason="chromadb not installed")
def test_lifecycle_script_on_local_executor(isolated_env: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", "--script",
                           str(REPO / "examples" / "chroma-lifecycle.bc")],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "submitted chroma as job local-1" in out
    assert "RUNNING on" in out and "ready" in out
    assert "stopped chroma job local-1: CANCELLED" in out
    transcript = next(Path(os.environ["BENCHCTL_HOME"], "sessions").glob("*/transcript.txt")).read_text()
    assert "benchctl> check chroma --wait --timeout 300" in transcript
    assert "CANCELLED" in transcript


def test_recipe_example_applies(isolated_env: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", "-e",
                           f"start chroma --recipe {REPO / 'examples' / 'chroma-recipe.yaml'} --cpus 2 --dry-run"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "#SBATCH --time=02:00:00" in proc.stdout  # from the recipe
    assert "#SBATCH --mem=32G" in proc.stdout
    assert "#SBATCH --cpus-per-task=2" in proc.stdout  # the command option beats the recipe


def test_llm_bench_script_on_local_executor(isolated_env: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", "--script",
                           str(REPO / "examples" / "llm-bench.bc")],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "submitted llm-sim as job local-1" in out and "stopped llm-sim job local-1: CANCELLED" in out
    assert "c=1" in out and "c=8" in out and "server's view (/metrics" in out
    run = Path(out.split("results: ", 1)[1].split()[0])
    assert (run.parent / "requests.jsonl").exists() and (run.parent / "summary.csv").exists()
    transcript = next(Path(os.environ["BENCHCTL_HOME"], "sessions").glob("*/transcript.txt")).read_text()
    assert "benchctl> bench llm-sim --concurrency 1,8 --duration 10 --output-tokens 64" in transcript
