#!/usr/bin/env python3
"""How fast and how exact is benchctl's LLM client? Measured against the simulator (`benchctl.llmsim`).

    .venv/bin/python scripts/bench_llm_client.py [--seconds 10]

(a) the highest request rate the client sustains against a near-zero-latency server, closed loop at
    concurrency 64 and 256 (the simulator runs in its own process: client and server share the 2 cores);
(b) the client-added error of TTFT and TPOT at concurrency 1, 16, 64: the client's values minus the server's
    own truth (when it actually sent the first/last chunk, reported per request in the final usage chunk).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from benchctl.bench.llm import LlmConfig, point_metrics, run_point
from benchctl.bench.stats import summarize


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def simulator(*flags: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchctl.llmsim", "--host", "127.0.0.1", "--port", str(port),
                             "--max-concurrency", "4096", *flags], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def capacity(seconds: float) -> None:
    print("(a) sustained request rate against a zero-latency server (16 output tokens, closed loop)")
    with simulator("--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "16") as url:
        for concurrency in (64, 256):
            cfg = LlmConfig(backend="openai", model="sim", duration=seconds, output_tokens=16, input_tokens=16)
            m = point_metrics(cfg, asyncio.run(run_point(url, cfg, concurrency, None)))
            health = m["client_health"]
            print(f"  concurrency {concurrency:>3}: {m['request_throughput']:7.0f} req/s, "
                  f"{m['output_throughput']:8.0f} tok/s, failed {m['failed']}, client CPU "
                  f"{health['client_cpu_percent']:.0f}%, event-loop lag p99 "
                  f"{health['event_loop_lag_ms'].get('p99', 0):.1f} ms")


def accuracy(seconds: float) -> None:
    print("(b) client-added error vs the simulator's truth (ttft 50 ms, itl 10 ms, 32 tokens)")
    with simulator("--ttft-ms", "50", "--itl-ms", "10", "--output-tokens", "32") as url:
        for concurrency in (1, 16, 64):
            cfg = LlmConfig(backend="openai", model="sim", duration=seconds, output_tokens=32, input_tokens=16)
            outcome = asyncio.run(run_point(url, cfg, concurrency, None))
            ttft_err, tpot_err = [], []
            for r in outcome.results:
                truth = r.server_truth
                if not r.ok or not truth or not truth.get("chunk_sent_ms") or r.ttft is None:
                    continue
                sent = truth["chunk_sent_ms"]
                ttft_err.append(r.ttft * 1000 - sent[0])
                if r.tpot is not None and len(sent) > 1:
                    tpot_err.append(r.tpot * 1000 - (sent[-1] - sent[0]) / (r.tokens - 1))
            t, p = summarize(ttft_err), summarize(tpot_err)
            print(f"  concurrency {concurrency:>3}: {len(ttft_err)} requests; TTFT error p50 {t.get('p50', 0):.3f} ms "
                  f"p99 {t.get('p99', 0):.3f} ms; TPOT error p50 {p.get('p50', 0):.4f} ms p99 {p.get('p99', 0):.4f} ms")
    print("  (TTFT error includes loopback transfer and the client's own scheduling delay)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    capacity(args.seconds)
    accuracy(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
