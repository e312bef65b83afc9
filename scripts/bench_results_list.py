#!/usr/bin/env python3
"""Measure how long ``results`` takes to list many saved runs (target: < 0.5 s for 5,000).

    .venv/bin/python scripts/bench_results_list.py [--runs 5000] [--repeat 5]

Writes ``--runs`` synthetic runs (LLM, vector and IO500 in turn) with the real ``RunWriter`` into a temporary
BENCHCTL_HOME, then times the ``results`` command through an ``App`` (its output rendered at 80 columns into
memory): the default listing (the 20 newest), every run (``--last 0``), and ``--json --last 0``. A benchmark,
not a test: it prints the figures and exits 0 either way.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_S = 0.5
SERVICES = {"llm": ("vllm", "llm-sim", "ollama"), "vector": ("qdrant", "chroma"), "io500": ("io500",)}


def llm_points(i: int) -> list[dict[str, Any]]:
    """Points shaped like the LLM kind's (vLLM's keys, and the per-request lists that make run.json big)."""
    points = []
    for c in (1, 8, 64):
        tput = c * (2.0 + i % 7)
        points.append({"concurrency": c, "rate": None, "completed": 200, "failed": i % 3, "duration": 30.0,
                       "request_throughput": tput, "output_throughput": tput * 128,
                       "p50_ttft_ms": 20.0 + c, "p99_ttft_ms": 60.0 + 3 * c, "p50_tpot_ms": 9.0, "p99_tpot_ms": 14.0,
                       "p50_itl_ms": 9.0, "p99_itl_ms": 20.0, "p99_e2el_ms": 1200.0 + c,
                       "latencies": [1.2] * 200, "errors": [""] * 200})
    return points


def vector_points(i: int) -> list[dict[str, Any]]:
    return [{"concurrency": c, "qps": 500.0 * c + i % 11, "recall@10": 0.95 + (i % 5) / 100, "requests": 5000,
             "errors": 0, "latency_ms": {"p50": 1.5 * c, "p99": 4.0 * c}} for c in (1, 4, 16)]


def write_runs(home: Path, count: int) -> None:
    from benchctl.bench.results import RunWriter

    kinds = list(SERVICES)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        service = SERVICES[kind][i % len(SERVICES[kind])]
        # The run id holds the second it started: a distinct target keeps 5,000 ids of one second apart.
        writer = RunWriter(home, kind, f"{service}{i}")
        if kind == "io500":
            metrics: dict[str, Any] = {"score": {"bandwidth": 1.5 + i % 4, "iops": 20.0, "total": 5.5}}
            points: list[dict[str, Any]] = []
        else:
            metrics, points = {}, llm_points(i) if kind == "llm" else vector_points(i)
        result = writer.envelope(service={"name": service}, config={"model": "meta-llama/Llama-3.1-8B"}
                                 if kind == "llm" else {}, metrics=metrics, points=points, client_health={}, errors={})
        writer.finish(result)


def timed(app: Any, line: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        ok = app.run_line(line)
        times.append(time.perf_counter() - start)
        if not ok:
            raise SystemExit(f"{line!r} failed")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="benchctl-results-") as tmp:
        os.environ["BENCHCTL_HOME"] = str(Path(tmp) / "home")
        os.environ["BENCHCTL_CONFIG"] = str(Path(tmp) / "config.toml")
        Path(tmp, "config.toml").touch()  # no user settings
        from rich.console import Console

        from benchctl.app import App
        from benchctl.config import load_settings
        from benchctl.ui import Ui

        start = time.perf_counter()
        write_runs(Path(os.environ["BENCHCTL_HOME"]), args.runs)
        print(f"wrote {args.runs} runs with RunWriter in {time.perf_counter() - start:.1f} s")
        out = io.StringIO()
        app = App(settings=load_settings(executor="local"), ui=Ui(console=Console(file=out, width=80)))
        verdict = ""
        for line in ("results", "results --last 0", "results --json --last 0"):
            times = timed(app, line, args.repeat)
            best, median = min(times), statistics.median(times)
            print(f"{line:<26} best {best * 1000:7.1f} ms   median {median * 1000:7.1f} ms")
            if line == "results":
                verdict = "meets" if median < TARGET_S else "MISSES"
        print(f"`results` lists {args.runs} runs: {verdict} the {TARGET_S * 1000:.0f} ms target "
              f"(index {Path(os.environ['BENCHCTL_HOME'], 'results', 'index.jsonl').stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
