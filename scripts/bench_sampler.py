#!/usr/bin/env python3
"""What does sampling the server's /metrics during `bench` cost the client's timing? Measured against `benchctl.llmsim`.

    .venv/bin/python scripts/bench_sampler.py [--seconds 4] [--rounds 2] [--concurrency 16]

The simulator answers every request's first token exactly --ttft-ms after it arrives (no queue: its
--max-concurrency is far above the load), so the client-added TTFT error is the measured TTFT minus that
setting. The LLM load generator (closed loop) runs the same point with the sampler (`bench.sampler`, a thread
in this process, as in `bench`) off, every 1 s, every 0.1 s, and every 0.1 s against a page of vLLM's size
(~75 KiB, mostly histogram buckets; llm-sim's own page is ~10 KiB) served by a separate `python -m http.server`.
Printed per case: TTFT error median and p99, the event loop's lag p99, and the sampler thread's own CPU time
(per scrape, and as a share of one core). Cases alternate over --rounds, so a slow moment of the machine does
not land on one case only.

The simulator and the page server run pinned to the last core, the client (and its sampler thread) on the
others, as on separate machines (--no-pin shares every core). Loopback only, a few seconds per case.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchctl import aio
from benchctl.bench.llm.config import LlmConfig
from benchctl.bench.llm.loadgen import point_metrics, run_point
from benchctl.bench.sampler import Sampler, ScrapeTarget
from benchctl.bench.stats import summarize
from benchctl.bench.timeline import VLLM

ALL_CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPUS: set[int] = set(ALL_CPUS[-1:])
CLIENT_CPUS: set[int] = set(ALL_CPUS[:-1]) if len(ALL_CPUS) > 1 else set(ALL_CPUS)


def pin(cpus: set[int]) -> Callable[[], None]:
    def apply() -> None:
        os.sched_setaffinity(0, cpus)

    return apply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(cmd: list[str], ready: str, cwd: Path | None = None) -> Iterator[None]:
    """A server process on the server core, until ``ready`` (a URL) answers."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=pin(SERVER_CPUS))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(ready, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{cmd[2]} did not start") from None
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def vllm_sized_page() -> str:
    """A /metrics page shaped like vLLM's: its gauges and counters, 20 histograms of ~30 buckets, _created
    stamps and the Python runtime's series -- about 75 KiB, mostly lines the sampler must skip."""
    lab = 'engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"'
    lines = ["# TYPE python_gc_objects_collected_total counter"]
    lines += [f'python_gc_objects_collected_total{{generation="{g}"}} {1000 * g}.0' for g in range(3)]
    for name, value in (("num_requests_running", 16), ("num_requests_waiting", 0), ("kv_cache_usage_perc", 0.42)):
        lines += [f"# HELP vllm:{name} x", f"# TYPE vllm:{name} gauge", f"vllm:{name}{{{lab}}} {value}"]
    for name in ("prompt_tokens", "generation_tokens", "num_preemptions", "prefix_cache_queries", "prefix_cache_hits"):
        lines += [f"# TYPE vllm:{name} counter", f"vllm:{name}_total{{{lab}}} 123456.0",
                  f"vllm:{name}_created{{{lab}}} 1.7e9"]
    bounds = [0.001 * 1.5**i for i in range(30)]
    for h in range(20):
        name = f"vllm:histogram_{h}_seconds"
        lines += [f"# HELP {name} x", f"# TYPE {name} histogram"]
        lines += [f'{name}_bucket{{{lab},le="{b:.6g}"}} {i * 7}.0' for i, b in enumerate(bounds)]
        lines += [f'{name}_bucket{{{lab},le="+Inf"}} 300.0', f"{name}_count{{{lab}}} 300.0",
                  f"{name}_sum{{{lab}}} 12.5", f"{name}_created{{{lab}}} 1.7e9"]
    return "\n".join(lines) + "\n"


def one_case(url: str, cfg: LlmConfig, concurrency: int, ttft_ms: float, folder: Path,
             target: ScrapeTarget | None, interval: float) -> dict[str, Any]:
    targets = [target] if target is not None and interval > 0 else []
    folder.mkdir(parents=True, exist_ok=True)
    sampler = Sampler(folder, targets, interval)
    with sampler:
        outcome = aio.run(run_point(url, cfg, concurrency, None))
    record = sampler.record().get("server_timeline", {})
    m = point_metrics(cfg, outcome, concurrency, None)
    errors = [r.ttft * 1000 - ttft_ms for r in outcome.results if r.ok and r.ttft is not None]
    scrapes = sum(t["scrapes"] for t in record.get("targets", {}).values())
    return {"err": summarize(errors), "lag_p99": m["client_health"]["event_loop_lag_ms"].get("p99", 0.0),
            "cpu_s": record.get("sampler_cpu_s", 0.0), "scrapes": scrapes,
            "failed": sum(t["failed"] for t in record.get("targets", {}).values()), "duration": outcome.duration}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per case and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and servers to separate cores")
    args = parser.parse_args()
    global SERVER_CPUS, CLIENT_CPUS
    if args.no_pin:
        SERVER_CPUS = CLIENT_CPUS = set(ALL_CPUS)
    os.sched_setaffinity(0, CLIENT_CPUS)
    print(f"cores: servers {sorted(SERVER_CPUS)}, client + sampler {sorted(CLIENT_CPUS)} (of {len(ALL_CPUS)}; "
          f"event loop {aio.loop_name()}); llm-sim TTFT {args.ttft_ms:g} ms, ITL 5 ms, 16 tokens, concurrency "
          f"{args.concurrency}, {args.seconds:g} s per case, {args.rounds} round(s)")
    sim_port, page_port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    with tempfile.TemporaryDirectory(prefix="bench-sampler-") as tmp:
        page = vllm_sized_page()
        (Path(tmp) / "metrics").write_text(page)
        with process([sys.executable, "-m", "benchctl.llmsim", "--port", str(sim_port), "--ttft-ms",
                      f"{args.ttft_ms:g}", "--itl-ms", "5", "--output-tokens", "16", "--max-concurrency", "4096"],
                     sim + "/health"), \
                process([sys.executable, "-m", "http.server", str(page_port), "--bind", "127.0.0.1"],
                        f"http://127.0.0.1:{page_port}/metrics", cwd=Path(tmp)):
            cases: list[tuple[str, ScrapeTarget | None, float]] = [
                ("off", None, 0.0),
                ("1 s", ScrapeTarget("server", sim + "/metrics", VLLM), 1.0),
                ("0.1 s", ScrapeTarget("server", sim + "/metrics", VLLM), 0.1),
                (f"0.1 s, {len(page) // 1024} KiB page", ScrapeTarget("server", f"http://127.0.0.1:{page_port}/metrics",
                                                                      VLLM), 0.1)]
            cfg = LlmConfig(backend="openai", model="sim", duration=args.seconds, output_tokens=16, input_tokens=16)
            warm = LlmConfig(backend="openai", model="sim", duration=1.0, output_tokens=16, input_tokens=16)
            aio.run(run_point(sim, warm, args.concurrency, None))  # connections, caches, CPU clocks: not measured
            print("  round  sampler                 requests  TTFT err p50     p99  loop lag p99  sampler CPU")
            for round_no in range(args.rounds):
                order = cases if round_no % 2 == 0 else cases[::-1]
                for n, (name, target, interval) in enumerate(order):
                    r = one_case(sim, cfg, args.concurrency, args.ttft_ms, Path(tmp) / f"r{round_no}-{n}", target,
                                 interval)
                    failed = f", {r['failed']} failed" if r["failed"] else ""
                    cpu = (f"{1e6 * r['cpu_s'] / r['scrapes']:5.0f} us/scrape, {100 * r['cpu_s'] / r['duration']:.2f}% "
                           f"of a core ({r['scrapes']} scrapes{failed})" if r["scrapes"] else "-")
                    print(f"  {round_no + 1:>5}  {name:<22}  {r['err'].get('count', 0):>8.0f}  "
                          f"{r['err'].get('p50', 0):12.3f} {r['err'].get('p99', 0):7.3f}  {r['lag_p99']:12.3f}  {cpu}")
    print("  (ms; TTFT err = client TTFT - the simulator's TTFT setting: loopback, the simulator's own scheduling and\n"
          "   the client's; the sampler's share is the difference to 'off')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
