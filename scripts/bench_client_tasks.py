#!/usr/bin/env python3
"""Sustained request rate of 1 vs 2 client processes against a near-zero-latency simulator, and the TTFT the
client itself adds (issue 14: what splitting the load generator buys on this machine).

    .venv/bin/python scripts/bench_client_tasks.py [--concurrency 64] [--duration 4] [--repeat 2]

Starts llm-sim as a local process on a free loopback port (TTFT 0, no gap between tokens, 2-token outputs, so
the server answers as fast as it can), then runs the closed-loop client with the same total concurrency as
1 task and as 2 tasks (``python -m benchctl.bench.client.task``, started as local processes exactly as
``bench --client here --client-tasks N`` does), and merges each run from the union of its records
(``bench.client.merge``). Reported per setting: completed requests per second, and the client-added TTFT
error = measured TTFT - the simulator's configured TTFT (0), p50 and p99 -- time spent in the client, the
kernel's loopback and the simulator's event loop. A benchmark, not a test: it prints the figures and exits 0.

The simulator is one process too: on a 2-core machine, 1 client + server already use both cores, and a second
client process competes with the server for them, so the figure says where the limit is on THIS machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchctl.bench.client.launchers import task_argv
from benchctl.bench.client.merge import merge
from benchctl.bench.client.records import parse_lines
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.stats import percentile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "benchctl.llmsim", "--port", str(port), "--ttft-ms", "0",
                             "--itl-ms", "0", "--output-tokens", "2", "--max-concurrency", "4096"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("llm-sim did not start")


def run(url: str, tasks: int, concurrency: int, duration: float) -> dict[str, Any]:
    """One closed-loop run of ``tasks`` processes; the merged point."""
    cfg = LlmConfig(model="sim", concurrency=[concurrency], duration=duration, grace=5.0, output_tokens=2,
                    input_tokens=16, server_metrics_interval=0)
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        folder = Path(tmp)
        spec = folder / "spec.json"
        spec.write_text(json.dumps({"config": cfg.record(), "url": url}))
        procs = [subprocess.Popen(task_argv(spec, folder, i, tasks), stdout=subprocess.DEVNULL)
                 for i in range(tasks)]
        for p in procs:
            p.wait(timeout=duration + 60)
        records = [r for i in range(tasks) for r in parse_lines((folder / f"requests-{i}.jsonl").read_text())]
        results = [json.loads((folder / f"task-{i}.json").read_text()) for i in range(tasks)]
    point = merge(cfg, tasks, records, results).points[0]
    ttft = sorted(r["chunks"][0] - r["sent"] for r in records if r["ok"] and r["chunks"])
    point["ttft_error_ms"] = (1000 * percentile(ttft, 50), 1000 * percentile(ttft, 99))
    return point


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=64, help="total users (split over the tasks)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=2, help="runs per setting (the best rate is reported)")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    port = free_port()
    sim = start_sim(port)
    url = f"http://127.0.0.1:{port}"
    print(f"llm-sim TTFT 0 ms, ITL 0 ms, 2 output tokens; closed loop, {args.concurrency} users, "
          f"{args.duration:g} s per run, best of {args.repeat}; {os.cpu_count()} CPUs")
    try:
        rows = []
        for tasks in (1, 2):
            best: dict[str, Any] | None = None
            for _ in range(args.repeat):
                point = run(url, tasks, args.concurrency, args.duration)
                if best is None or point["request_throughput"] > best["request_throughput"]:
                    best = point
            assert best is not None
            cpu = max(t.get("client_cpu_percent", 0.0) for t in best["client_health"]["tasks"])
            rows.append((tasks, best["request_throughput"], *best["ttft_error_ms"], cpu, best["failed"]))
    finally:
        sim.terminate()
        sim.wait(10)
    print(f"{'client processes':>16} {'req/s':>9} {'TTFT err p50 ms':>16} {'TTFT err p99 ms':>16} "
          f"{'busiest task CPU':>17} {'failed':>7}")
    for tasks, rate, p50, p99, cpu, failed in rows:
        print(f"{tasks:>16} {rate:>9.0f} {p50:>16.2f} {p99:>16.2f} {cpu:>16.0f}% {failed:>7}")
    print(f"2 vs 1 process: x{rows[1][1] / rows[0][1]:.2f} the request rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
