"""Faults produced for real against the LLM client: the served process killed or frozen mid-run, the shell
interrupted (Ctrl-C, SIGTERM), nobody listening. benchctl runs as its own process (``benchctl -e``), the
server is a real llm-sim process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHCTL = [sys.executable, "-m", "benchctl"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sim() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real llm-sim process (its own pid, so it can be killed or frozen)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchctl.llmsim", "--port", str(port), "--ttft-ms", "20",
                             "--itl-ms", "5", "--output-tokens", "16"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield proc, f"http://127.0.0.1:{port}"
    os.kill(proc.pid, signal.SIGCONT) if proc.poll() is None else None
    proc.kill()
    proc.wait()


def run_benchctl(command: str, *, after: float = 0.0, action: object = None) -> tuple[int, str, float, int]:
    """Run ``benchctl -e command``; ``action()`` fires ``after`` seconds in. Returns (exit status, output,
    seconds, peak RSS in MB of the benchctl process alone)."""
    proc = subprocess.Popen([*BENCHCTL, "--executor", "local", "-e", command], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(after, action) if action else None  # type: ignore[arg-type]
    if timer:
        timer.start()
    t0 = time.monotonic()
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if timer:
        timer.cancel()
    return proc.returncode, out, time.monotonic() - t0, usage.ru_maxrss // 1024


def run_dir(output: str) -> Path:
    return Path(output.split("results: ", 1)[1].split()[0]).parent


def records(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "requests.jsonl").read_text().splitlines()]


def test_server_killed_mid_run_ends_the_point_and_fails_the_command(sim: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = sim
    status, out, took, peak_mb = run_benchctl(
        f"bench llm --url {url} --model sim --concurrency 8 --duration 10 --grace 5 --output-tokens 16",
        after=3.0, action=proc.kill)
    assert status != 0, out
    assert took < 10 + 5 + 5, out  # duration + grace (+ start-up)
    assert peak_mb < 300, peak_mb
    folder = run_dir(out)
    failed = [r for r in records(folder) if r.get("ok") is False]
    assert 0 < len(failed) < 1000
    run = json.loads((folder / "run.json").read_text())
    point = run["points"][0]
    assert point["completed"] > 0 and point["failed"] > 0  # before and after the death
    assert point["client_health"]["unreachable"] and "unreachable" in point["client_health"]["stopped_early"]
    assert "the server could not be reached" in out


def test_frozen_server_point_ends_at_duration_plus_grace(sim: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = sim
    _, out, took, _ = run_benchctl(
        f"bench llm --url {url} --model sim --concurrency 4 --duration 6 --grace 3 --output-tokens 16",
        after=2.0, action=lambda: os.kill(proc.pid, signal.SIGSTOP))
    os.kill(proc.pid, signal.SIGCONT)
    assert took < 6 + 3 + 5, out
    run = json.loads((run_dir(out) / "run.json").read_text())
    errors = run["points"][0]["error_counts"]
    assert set(errors) <= {"stalled", "deadline", "timeout", "connection"} and errors, errors
    assert "stalled" in run["points"][0]["client_health"]["stopped_early"] or "deadline" in errors


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_keeps_what_it_measured(sim: tuple[subprocess.Popen[bytes], str], sig: int) -> None:
    _, url = sim
    holder: dict[str, subprocess.Popen[str]] = {}
    proc = subprocess.Popen([*BENCHCTL, "--executor", "local", "-e",
                             f"bench llm --url {url} --model sim --concurrency 1,2 --duration 20 --output-tokens 16"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    holder["p"] = proc
    time.sleep(4)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == (1 if sig == signal.SIGINT else 128 + signal.SIGTERM), out
    assert "interrupted" in out and "results: " in out
    folder = run_dir(out)
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "interrupted" and len(run["points"]) == 1 and run["points"][0]["interrupted"]
    assert run["points"][0]["completed"] > 0
    assert len(records(folder)) >= run["points"][0]["completed"]  # records written as requests ended
    index = (folder.parent / "index.jsonl").read_text()
    assert run["run_id"] in index


def test_nobody_listening_is_one_line_and_exit_status(tmp_path: Path) -> None:
    status, out, took, _ = run_benchctl(f"bench llm --url http://127.0.0.1:{free_port()} --model m --duration 5")
    assert status != 0 and took < 10
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot reach" in errors[0], out
