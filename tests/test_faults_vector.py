"""Faults produced for real against the vector client: a real ChromaDB (`chroma run`) killed or frozen in the
middle of the sweep, and the shell interrupted. benchctl runs as its own process (``benchctl -e``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_faults_llm import free_port, run_benchctl, run_dir

CHROMA = Path(sys.executable).with_name("chroma")
BENCH = "--n 2000 --dim 16 --queries 50 --concurrency 4,8 --duration 8 --grace 3"


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    if not CHROMA.exists():
        pytest.skip("chroma is not installed next to this Python")
    port = free_port()
    proc = subprocess.Popen([str(CHROMA), "run", "--host", "127.0.0.1", "--port", str(port), "--path",
                             str(tmp_path / "chroma-data")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    yield proc, url
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait()


def test_chroma_killed_mid_sweep(chroma: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = chroma
    status, out, took, peak_mb = run_benchctl(f"bench vector --url {url} --store chroma {BENCH}",
                                              after=6.0, action=proc.kill)
    assert status != 0, out
    assert "stopped early" in out and "every request" in out, out
    assert took < 3 + 8 + 3 + 10, out  # set-up + one point + grace, not every point
    assert peak_mb < 300
    folder = run_dir(out)
    run = json.loads((folder / "run.json").read_text())
    assert run["points"] and run["points"][-1]["stopped_early"]
    failed = [line for line in (folder / "requests.jsonl").read_text().splitlines() if '"ok":false' in line]
    assert 0 < len(failed) < 1000


def test_chroma_frozen_mid_sweep(chroma: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = chroma
    status, out, took, _ = run_benchctl(f"bench vector --url {url} --store chroma {BENCH}",
                                        after=6.0, action=lambda: os.kill(proc.pid, signal.SIGSTOP))
    assert status != 0, out
    assert took < 3 + 8 + 3 + 3 + 10, out  # a frozen request ends by its timeout (the grace)
    run = json.loads((run_dir(out) / "run.json").read_text())
    assert run["points"][-1]["stopped_early"] and "ReadTimeout" in json.dumps(run["error_counts"])


def test_interrupted_vector_run_is_saved(chroma: tuple[subprocess.Popen[bytes], str]) -> None:
    _, url = chroma
    proc = subprocess.Popen([sys.executable, "-m", "benchctl", "--executor", "local", "-e",
                             f"bench vector --url {url} --store chroma --n 2000 --dim 16 --queries 50 "
                             "--concurrency 2 --duration 30"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "interrupted" in out, out
    run = json.loads((run_dir(out) / "run.json").read_text())
    assert run["status"] == "interrupted" and run["points"][-1]["interrupted"] and run["points"][-1]["requests"] > 0
