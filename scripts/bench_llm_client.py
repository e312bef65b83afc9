#!/usr/bin/env python3
"""How fast and how exact is benchctl's LLM client, next to GuideLLM? Measured against `benchctl.llmsim`.

    scripts/setup-guidellm.sh   # once: GuideLLM 0.8.1 (CPU torch) in .venv-guidellm, picked up from there
    .venv/bin/python scripts/bench_llm_client.py [--seconds 10] [--guidellm PATH | --no-guidellm]

(a) the highest request rate the client sustains against a near-zero-latency server, closed loop at
    concurrency 64 and 256, with the client's CPU per request (what it would sustain on a core of its own);
(b) the client-added error of TTFT and TPOT at concurrency 1, 16, 64: the client's values minus the server's
    own truth (from when the request's bytes reached the simulator to when it handed the first/last chunk to
    the kernel, reported per request in the final usage chunk), and where the TTFT error goes: request leg
    and response leg, both measured on the one CLOCK_MONOTONIC that client and simulator share.

The simulator runs in its own process pinned to the last core, the clients (benchctl in this process, every
GuideLLM process) on the others: client and server as on separate machines, the same budget for both
clients (--no-pin shares all cores).

GuideLLM runs the same points as a subprocess (`guidellm run`, profile `concurrent`, `max_duration` = the same
seconds, synthetic 16-token prompts, `/v1/completions` like benchctl) against its own fresh simulator with the
same settings. Its req/s = successful requests / benchmark duration from its JSON report. Its report keeps,
per request, TTFT, ITL (= (last - first token) / (n - 1), what benchctl calls TPOT) and the server's response
id but not the simulator's truth, so for (b) the simulator appends every request's truth (id + llmsim object)
to a file (--truth-log); requests are matched by id. Offline: GuideLLM's synthetic data needs a
tokenizer, built locally with scripts/make_tiny_llm.py (or given with --processor), and HF_HUB_OFFLINE=1.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchctl import aio
from benchctl.bench.llm.loadgen import LlmConfig, PointOutcome, point_metrics, run_point
from benchctl.bench.stats import summarize

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GUIDELLM = ROOT / ".venv-guidellm" / "bin" / "guidellm"
Sample = tuple[float | None, float | None, int, list[float]]  # client TTFT ms, client TPOT ms, tokens, truth


# Client and server on separate cores (as on separate machines in real use), the same budget for both
# clients: the simulator gets the last core, benchctl and all of GuideLLM's processes the others.
# --no-pin shares every core between everything (the scheduler then migrates them into each other's way).
ALL_CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPUS: set[int] = set(ALL_CPUS[-1:]) if len(ALL_CPUS) > 1 else set(ALL_CPUS)
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
def simulator(*flags: str, truth_log: Path | None = None) -> Iterator[str]:
    port = free_port()
    head = [sys.executable, "-m", "benchctl.llmsim"]
    if truth_log is not None:
        head += ["--truth-log", str(truth_log)]
    proc = subprocess.Popen([*head, "--host", "127.0.0.1", "--port", str(port), "--max-concurrency", "4096", *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
                            preexec_fn=pin(SERVER_CPUS))
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


class GuideLLM:
    """`guidellm run` (0.8.1's CLI) as a subprocess; each run's JSON report is parsed and returned."""

    def __init__(self, exe: Path, workdir: Path, processor: Path | None) -> None:
        self.exe, self.workdir, self.processor = exe, workdir, processor
        self.env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        self.runs = 0

    def tokenizer(self) -> Path:
        if self.processor is None:  # GuideLLM's own venv has transformers/tokenizers/torch
            out = self.workdir / "tokenizer"
            subprocess.run([str(self.exe.parent / "python"), str(ROOT / "scripts" / "make_tiny_llm.py"), str(out)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
            self.processor = out
        return self.processor

    def run(self, url: str, streams: list[int], seconds: float, output_tokens: int) -> list[dict[str, Any]]:
        """One benchmark per stream count (closed loop); [] (with a note) when GuideLLM fails."""
        self.runs += 1
        report, log = self.workdir / f"run{self.runs}.json", self.workdir / f"run{self.runs}.log"
        cmd = [str(self.exe), "run", "--disable-console",
               "--backend", f"kind=openai_http,target={url},model=sim,request_format=/v1/completions",
               "--profile", "kind=concurrent," + ",".join(f"streams[{i}]={n}" for i, n in enumerate(streams)),
               "--constraint", f"kind=max_duration,seconds={seconds:g}",
               "--tokenizer", f"kind=huggingface_auto,model={self.tokenizer()}",
               "--data", f"kind=synthetic_text,prompt_tokens=16,output_tokens={output_tokens}",
               "--output", f"kind=json,path={report}"]
        try:
            with log.open("w") as out:
                subprocess.run(cmd, cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT, check=True,
                               timeout=len(streams) * (seconds + 60) + 120, preexec_fn=pin(CLIENT_CPUS))
            benchmarks: list[dict[str, Any]] = json.loads(report.read_text())["benchmarks"]
            return benchmarks
        except (subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
            print(f"  GuideLLM failed ({exc}); last lines of its log:", *tail, sep="\n    ")
            return []


def streams_of(bench: dict[str, Any]) -> int:
    return int(bench["config"]["strategy"]["streams"])


def errors_ms(samples: list[Sample]) -> tuple[dict[str, float], dict[str, float], int]:
    """Summaries of TTFT and TPOT error (client minus server truth, ms) and the number of requests compared."""
    ttft, tpot = [], []
    for client_ttft, client_tpot, tokens, sent in samples:
        if client_ttft is None or not sent:
            continue
        ttft.append(client_ttft - sent[0])
        if client_tpot is not None and len(sent) > 1 and tokens > 1:
            tpot.append(client_tpot - (sent[-1] - sent[0]) / (tokens - 1))
    return summarize(ttft), summarize(tpot), len(ttft)


def legs_ms(outcome: PointOutcome) -> tuple[dict[str, float], dict[str, float]]:
    """The TTFT error split in two with the simulator's absolute arrival stamp: request leg = server receives
    start - client send stamp; response leg = client first-chunk stamp - server first-chunk hand-off."""
    request, response = [], []
    for r in outcome.results:
        truth = r.server_truth or {}
        if not (r.ok and r.ttft is not None and r.sent and truth.get("arrival_monotonic") and truth["chunk_sent_ms"]):
            continue
        arrival = float(truth["arrival_monotonic"])
        request.append((arrival - r.sent) * 1000)
        response.append((r.sent + r.ttft - arrival) * 1000 - truth["chunk_sent_ms"][0])
    return summarize(request), summarize(response)


def benchctl_point(url: str, concurrency: int, seconds: float, output_tokens: int) -> PointOutcome:
    cfg = LlmConfig(backend="openai", model="sim", duration=seconds, output_tokens=output_tokens, input_tokens=16)
    return aio.run(run_point(url, cfg, concurrency, None))


def cpu_us_per_request(m: dict[str, Any]) -> float:
    """Client CPU time per completed request (us): the client's own cost, whatever limited the rate."""
    rate = m["request_throughput"]
    return m["client_health"]["client_cpu_percent"] / 100 / rate * 1e6 if rate else 0.0


def capacity(seconds: float, guidellm: GuideLLM | None) -> None:
    print(f"(a) sustained request rate against a zero-latency server (16 output tokens, closed loop, {seconds:g} s "
          "per point)")
    flags = ("--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "16")
    ours: dict[int, float] = {}
    with simulator(*flags) as url:
        for concurrency in (64, 256):
            cfg = LlmConfig(backend="openai", model="sim", duration=seconds, output_tokens=16, input_tokens=16)
            m = point_metrics(cfg, benchctl_point(url, concurrency, seconds, 16), concurrency, None)
            ours[concurrency] = m["request_throughput"]
            health = m["client_health"]
            print(f"  benchctl c={concurrency:<3}: {m['request_throughput']:7.0f} req/s, "
                  f"{m['output_throughput']:8.0f} tok/s, failed {m['failed']}, client CPU "
                  f"{health['client_cpu_percent']:.0f}% = {cpu_us_per_request(m):.0f} us/request (one core of "
                  f"its own: ~{1e6 / max(cpu_us_per_request(m), 1e-9):.0f} req/s), event-loop lag p99 "
                  f"{health['event_loop_lag_ms'].get('p99', 0):.1f} ms")
    theirs: dict[int, float] = {}
    if guidellm is not None:
        with simulator(*flags) as url:
            for bench in guidellm.run(url, [64, 256], seconds, 16):
                totals = bench["metrics"]["request_totals"]
                theirs[streams_of(bench)] = totals["successful"] / bench["duration"]
                print(f"  GuideLLM c={streams_of(bench):<3}: {theirs[streams_of(bench)]:7.0f} req/s, successful "
                      f"{totals['successful']}, errored {totals['errored']}, cut at the end {totals['incomplete']}, "
                      f"{bench['scheduler_state']['num_processes']} worker processes")
    print("  concurrency  benchctl req/s  GuideLLM req/s  ratio (target >= 2x)")
    for concurrency, rate in ours.items():
        other = theirs.get(concurrency)
        print(f"  {concurrency:>11}  {rate:>14.0f}  " + (f"{other:>14.0f}  {rate / other:5.2f}x" if other else
                                                          f"{'-':>14}  {'-':>5}"))


def accuracy(seconds: float, guidellm: GuideLLM | None) -> None:
    print("(b) client-added error vs the simulator's truth (ttft 50 ms, itl 10 ms, 32 tokens)")
    flags = ("--ttft-ms", "50", "--itl-ms", "10", "--output-tokens", "32")
    rows: list[tuple[int, str, dict[str, float], dict[str, float], int]] = []
    legs: list[tuple[int, dict[str, float], dict[str, float]]] = []
    with simulator(*flags) as url:
        for concurrency in (1, 16, 64):
            outcome = benchctl_point(url, concurrency, seconds, 32)
            samples: list[Sample] = [
                (r.ttft * 1000, r.tpot * 1000 if r.tpot is not None else None, r.tokens,
                 r.server_truth["chunk_sent_ms"])
                for r in outcome.results
                if r.ok and r.ttft is not None and r.server_truth and r.server_truth.get("chunk_sent_ms")]
            rows.append((concurrency, "benchctl", *errors_ms(samples)))
            legs.append((concurrency, *legs_ms(outcome)))
    if guidellm is not None:
        truth_log = guidellm.workdir / "truth.jsonl"
        with simulator(*flags, truth_log=truth_log) as url:
            benches = guidellm.run(url, [1, 16, 64], seconds, 32)
        truth = {}
        for line in truth_log.read_text().splitlines() if truth_log.exists() else []:
            chunk = json.loads(line)
            truth[chunk["id"]] = chunk["llmsim"]["chunk_sent_ms"]
        for bench in benches:
            done = bench["requests"]["successful"]
            samples = [(r["time_to_first_token_ms"], r["inter_token_latency_ms"], r["output_tokens"] or 0,
                        truth[r["response_id"]]) for r in done if r.get("response_id") in truth]
            if len(samples) < len(done):
                print(f"  GuideLLM c={streams_of(bench)}: {len(done) - len(samples)} of {len(done)} requests had no "
                      "matching server truth (left out)")
            rows.append((streams_of(bench), "GuideLLM", *errors_ms(samples)))
    print("  concurrency  client    requests  TTFT err p50     p99  TPOT err p50      p99  (ms)")
    for concurrency, name, t, p, n in sorted(rows, key=lambda row: (row[0], row[1] != "benchctl")):
        print(f"  {concurrency:>11}  {name:<8}  {n:>8}  {t.get('p50', 0):12.3f} {t.get('p99', 0):7.3f}  "
              f"{p.get('p50', 0):12.4f} {p.get('p99', 0):8.4f}")
    print("  where benchctl's TTFT error goes (one clock: CLOCK_MONOTONIC on both sides), p50 / p99 ms:")
    for concurrency, request, response in legs:
        print(f"  {concurrency:>11}  request leg (client stamp -> server receives) {request.get('p50', 0):6.3f} / "
              f"{request.get('p99', 0):6.3f}; response leg (first chunk to the kernel -> client stamp) "
              f"{response.get('p50', 0):6.3f} / {response.get('p99', 0):6.3f}")
    print("  (TTFT error includes loopback transfer and the client's own scheduling delay;\n"
          "   GuideLLM's TPOT is its inter_token_latency_ms, (last - first token) / (n - 1) like benchctl's)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--guidellm", type=Path, default=DEFAULT_GUIDELLM,
                        help="the guidellm executable (default: .venv-guidellm/bin/guidellm)")
    parser.add_argument("--no-guidellm", action="store_true", help="measure benchctl only")
    parser.add_argument("--processor", type=Path, help="tokenizer dir for GuideLLM (default: built with make_tiny_llm)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client and simulator to separate cores")
    args = parser.parse_args()
    global SERVER_CPUS, CLIENT_CPUS
    if args.no_pin:
        SERVER_CPUS = CLIENT_CPUS = set(ALL_CPUS)
    os.sched_setaffinity(0, CLIENT_CPUS)  # benchctl's client runs in this process
    print(f"cores: simulator {sorted(SERVER_CPUS)}, clients {sorted(CLIENT_CPUS)} (of {len(ALL_CPUS)}; "
          f"event loop {aio.loop_name()})")
    with tempfile.TemporaryDirectory(prefix="bench-llm-client-") as tmp:
        guidellm = None
        if args.no_guidellm:
            pass
        elif args.guidellm.is_file() and os.access(args.guidellm, os.X_OK):
            guidellm = GuideLLM(args.guidellm.resolve(), Path(tmp), args.processor)
        else:
            print(f"note: no GuideLLM at {args.guidellm}: measuring benchctl only "
                  "(install it with scripts/setup-guidellm.sh, or pass --guidellm PATH)")
        capacity(args.seconds, guidellm)
        accuracy(args.seconds, guidellm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
