"""The server's timeline during `bench` (``bench.sampler`` + ``bench.timeline``): real llm-sim processes and a
real Qdrant-speaking server scraped while the real load generators run; servers whose /metrics fails, freezes
or does not exist; Ctrl-C/SIGTERM; the per-point summary on hand-made series; old runs without a timeline."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from benchctl.app import App
from benchctl.bench.llm.kind import LlmKind
from benchctl.bench.results import read_run
from benchctl.bench.sampler import Sampler, ScrapeTarget, select
from benchctl.bench.timeline import QDRANT, TIMELINE_FILE, VLLM, Figure, counter_rate, pooled, summarize_window
from benchctl.bench.vector.kind import VectorKind
from benchctl.bench.vector.stores import STORES
from benchctl.llmsim import ServerThread, SimConfig, Simulator
from tests.conftest import string_ui
from tests.qdrant_server import QdrantTestServer, _Handler
from tests.test_faults_llm import BENCHCTL, free_port, run_dir
from tests.test_faults_vector import chroma  # noqa: F401 - the real-Chroma fixture
from tests.test_results import OLD_RUN


def output(app: App) -> str:
    return str(app.out.getvalue())  # type: ignore[attr-defined]


def lines_of(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / TIMELINE_FILE).read_text().splitlines()]


def series(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k.split("{", 1)[0] == name)


def no_sampler_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("bench-sampler-") and t.is_alive()]


@contextmanager
def llmsim_process(*flags: str) -> Iterator[str]:
    """A real llm-sim process on loopback."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchctl.llmsim", "--port", str(port), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "llm-sim did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


# ---- the summary of a point, on hand-made series ------------------------------------------------------
def test_point_summary_peak_mean_and_counter_rate() -> None:
    figures = VLLM.figures
    # Two engines (data parallel): running/waiting add up, the KV cache is the fuller engine's.
    page = {'vllm:num_requests_running{engine="0"}': 3.0, 'vllm:num_requests_running{engine="1"}': 1.0,
            'vllm:num_requests_waiting{engine="0"}': 2.0, 'vllm:kv_cache_usage_perc{engine="0"}': 0.25,
            'vllm:kv_cache_usage_perc{engine="1"}': 0.5, 'vllm:generation_tokens_total{engine="0"}': 100.0}
    assert pooled(page, figures) == {"running": 4.0, "waiting": 2.0, "kv_cache_percent": 50.0,
                                     "generation_tokens_per_s": 100.0}
    samples = [(0.5, {"running": 9.0, "generation_tokens_per_s": 0.0}),  # before the window
               (1.0, {"running": 2.0, "waiting": 0.0, "generation_tokens_per_s": 1000.0}),
               (2.0, {"running": 6.0, "waiting": 3.0, "generation_tokens_per_s": 1400.0}),
               (3.0, {"running": 4.0, "waiting": 0.0, "generation_tokens_per_s": 100.0}),  # restarted: 100 new
               (4.0, {"running": 4.0, "waiting": 1.0, "generation_tokens_per_s": 500.0}),
               (9.0, {"running": 50.0, "generation_tokens_per_s": 9000.0})]  # after it
    s = summarize_window(samples, 1.0, 4.0, figures)
    assert s["samples"] == 4 and s["window_s"] == [1.0, 4.0]
    assert s["running"] == {"peak": 6.0, "mean": 4.0} and s["waiting"] == {"peak": 3.0, "mean": 1.0}
    assert s["kv_cache_percent"] is None  # not exposed by this server: no figure, not a zero
    assert s["generation_tokens_per_s"] == pytest.approx((400 + 100 + 400) / 3.0, abs=1e-3)
    assert counter_rate([(1.0, 5.0)]) is None and counter_rate([]) is None
    assert summarize_window(samples, 5.0, 8.0, figures)["running"] is None
    scaled = Figure("mib", "MiB", ("memory_resident_bytes",), scale=1 / 2**20)
    assert pooled({"memory_resident_bytes": 3 * 2**20}, (scaled,)) == {"mib": 3.0}


def test_only_the_servers_own_series_without_buckets_are_kept() -> None:
    page = "\n".join([
        "# HELP vllm:num_requests_running Number of requests", "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{engine="0",model_name="m"} 4.0',
        'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.5',  # an older vLLM's name
        'vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3"} 2.0',
        'vllm:e2e_request_latency_seconds_sum{engine="0"} 1.5',
        'vllm:e2e_request_latency_seconds_count{engine="0"} 3.0',
        'vllm:generation_tokens_created{engine="0"} 1.7e9', 'vllm:generation_tokens_total{engine="0"} 12.0',
        "vllm:weird NaN", 'python_gc_objects_collected_total{generation="0"} 9.0', "process_cpu_seconds_total 1.0"])
    assert select(page, VLLM.prefixes) == {
        'vllm:num_requests_running{engine="0",model_name="m"}': 4.0,
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"}': 0.5,
        'vllm:e2e_request_latency_seconds_sum{engine="0"}': 1.5,
        'vllm:e2e_request_latency_seconds_count{engine="0"}': 3.0,
        'vllm:generation_tokens_total{engine="0"}': 12.0}
    # Qdrant's endpoint label is the route pattern, braces included.
    qdrant = ('rest_responses_total{method="POST",endpoint="/collections/{name}/points/query",status="200"} 7\n'
              'rest_responses_duration_seconds_bucket{endpoint="/collections/{name}",le="0.1"} 3\n'
              'memory_resident_bytes 1024\nprocess_threads 9\napp_info{name="qdrant"} 1\n')
    assert select(qdrant, QDRANT.prefixes) == {
        'rest_responses_total{method="POST",endpoint="/collections/{name}/points/query",status="200"}': 7.0,
        "memory_resident_bytes": 1024.0}


# ---- LLM: a real llm-sim process ---------------------------------------------------------------------
def test_bench_llm_sim_timeline_agrees_with_the_load(app: App) -> None:
    with llmsim_process("--ttft-ms", "400", "--itl-ms", "5", "--output-tokens", "4") as url:
        assert app.run_line(f"bench llm --url {url} --model sim --concurrency 4,1 --duration 1.5 --output-tokens 4 "
                            f"--input-tokens 8 --server-metrics-interval 0.05"), output(app)
    assert no_sampler_threads()
    folder = run_dir(output(app))
    run = json.loads((folder / "run.json").read_text())
    assert run["server_metrics_file"] == TIMELINE_FILE
    server = run["server_timeline"]["targets"]["server"]
    assert run["server_timeline"]["family"] == "vllm" and server["scrapes"] > 20 and server["failed"] == 0
    lines = lines_of(folder)
    assert len(lines) == server["scrapes"] and {line["target"] for line in lines} == {"server"}
    assert all(not k.endswith("_bucket") and "_bucket{" not in k for line in lines for k in line["values"])
    for point, users in zip(run["points"], (4, 1), strict=True):
        label, timeline = f"concurrency {users}", point["server_timeline"]
        mine = [line for line in lines if line["point"] == label]
        start, end = timeline["window_s"]
        assert len(mine) == timeline["samples"] >= 10
        assert all(start <= line["elapsed"] <= end for line in mine)  # samples fall inside the point's window
        in_flight = [series(line["values"], "vllm:num_requests_running") +
                     series(line["values"], "vllm:num_requests_waiting") for line in mine]
        assert max(in_flight) == users == point["peak_in_flight"]  # the server saw the client's concurrency
        assert timeline["running"]["peak"] == users and 0 < timeline["running"]["mean"] <= users
        # Generation tokens/s by the server's counter over the window, next to the client's own figure.
        assert 0.5 <= timeline["generation_tokens_per_s"] / point["output_throughput"] <= 1.5
    assert all(line["point"] in ("", "concurrency 4", "concurrency 1") for line in lines)
    text = output(app)
    assert "server's timeline, /metrics every 0.05 s" in text and re.search(r"c=4 +│ +4 / ", text), text
    assert "server timeline missing" not in text and "partial" not in text


def test_summary_fits_80_columns_and_an_old_run_still_loads(app: App, tmp_path: Path) -> None:
    with llmsim_process("--ttft-ms", "100", "--itl-ms", "2", "--output-tokens", "4") as url:
        assert app.run_line(f"bench llm --url {url} --model sim --concurrency 2 --duration 1 --output-tokens 4 "
                            f"--server-metrics-interval 0.1 --slo ttft:500"), output(app)
    run = read_run(run_dir(output(app)))
    ui, buf = string_ui(width=80)
    ui.renderable(LlmKind().summary_view(run))
    shown = buf.getvalue()
    timeline = shown[shown.index("server's timeline"):]  # the lines above are the client's (not this test's)
    assert max(len(line) for line in timeline.splitlines()) <= 80
    assert re.search(r"c=2 .* 2 / ", timeline) and "gen tok/s" in timeline, shown
    # A run.json written before the timeline existed: it loads, the summary has no timeline and says nothing.
    data = run.to_dict()
    del data["server_timeline"], data["server_metrics_file"], data["points"][0]["server_timeline"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text(json.dumps(data))
    loaded = read_run(old)
    assert loaded.to_dict() == data
    ui, buf = string_ui(width=80)
    ui.renderable(LlmKind().summary_view(loaded))
    assert "c=2" in buf.getvalue() and "timeline" not in buf.getvalue()
    (old / "run.json").write_text(json.dumps(OLD_RUN))  # benchctl 0.1.0's
    assert "server_timeline" not in read_run(old).extra


class _BrokenMetrics(Simulator):
    """llm-sim whose /metrics fails: HTTP 500, or the connection closed without an answer."""

    mode = "500"

    async def prometheus(self, request: web.BaseRequest, arrival: float) -> web.Response:
        if self.mode == "closed" and request.transport is not None:
            request.transport.abort()
        return web.Response(status=500, text="metrics exporter failed")


@pytest.mark.parametrize("mode", ["500", "closed"])
def test_a_failing_metrics_endpoint_does_not_break_the_bench(app: App, mode: str) -> None:
    server = ServerThread(SimConfig(ttft_ms=20, itl_ms=2, output_tokens=4))
    server.sim = _BrokenMetrics(server.sim.cfg)
    server.sim.mode = mode
    server.start()
    try:
        assert app.run_line(f"bench llm --url {server.url} --model sim --concurrency 2 --duration 1 "
                            f"--output-tokens 4 --server-metrics-interval 0.1"), output(app)
    finally:
        server.stop()
    assert no_sampler_threads()
    text, folder = output(app), run_dir(output(app))
    run = json.loads((folder / "run.json").read_text())
    assert run["points"][0]["completed"] > 0  # the client's figures are all there
    assert not (folder / TIMELINE_FILE).exists() and "server_metrics_file" not in run
    target = run["server_timeline"]["targets"]["server"]
    assert target["scrapes"] == target["failed"] > 5
    assert target["errors"] == {("HTTP 500" if mode == "500" else "no answer"): target["failed"]}
    assert text.count("server timeline missing: every scrape of") == 1
    assert "server's timeline" not in text


def test_a_frozen_or_absent_metrics_server_does_not_hold_the_run(tmp_path: Path) -> None:
    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(16)  # connections are taken by the kernel, never answered
    refused = f"http://127.0.0.1:{free_port()}/metrics"
    try:
        sampler = Sampler(tmp_path, [ScrapeTarget("server", f"http://127.0.0.1:{frozen.getsockname()[1]}/metrics",
                                                  VLLM), ScrapeTarget("node", refused, VLLM)], 0.05).start()
        time.sleep(0.5)
        started = time.monotonic()
        record = sampler.record()
        assert time.monotonic() - started < 0.5  # stop() did not wait for the frozen scrape
    finally:
        frozen.close()
    targets = record["server_timeline"]["targets"]
    assert targets["server"]["errors"] == {"no answer": 1}  # the scrape left behind counts
    assert targets["node"]["failed"] == targets["node"]["scrapes"] >= 5
    assert targets["node"]["errors"] == {"no answer": targets["node"]["failed"]}
    assert not (tmp_path / TIMELINE_FILE).exists() and "server_metrics_file" not in record
    time.sleep(0.1)
    assert not any(t.name == "bench-sampler-node" and t.is_alive() for t in threading.enumerate())


def test_interval_0_writes_nothing_and_help_shows_the_default(app: App) -> None:
    with llmsim_process("--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4") as url:
        assert app.run_line(f"bench llm --url {url} --model sim --concurrency 1 --requests 3 --output-tokens 4 "
                            f"--server-metrics-interval 0"), output(app)
    folder = run_dir(output(app))
    run = json.loads((folder / "run.json").read_text())
    assert not (folder / TIMELINE_FILE).exists()
    assert "server_timeline" not in run and "server_metrics_file" not in run
    assert "server_timeline" not in run["points"][0] and "timeline" not in output(app)
    assert not app.run_line(f"bench llm --url {url} --model sim --server-metrics-interval 0.001")
    assert "--server-metrics-interval must be 0 (off) or at least 0.05" in output(app)
    for target in ("llm", "vector", "vllm", "qdrant"):
        assert app.run_line(f"help bench {target}")
        assert re.search(r"--server-metrics-interval S\s+seconds between scrapes", output(app))
    assert output(app).count("(0: off) (default 1)") == 4


def test_sigterm_keeps_the_timeline_sampled_so_far() -> None:
    with llmsim_process("--ttft-ms", "50", "--itl-ms", "5", "--output-tokens", "16") as url:
        proc = subprocess.Popen([*BENCHCTL, "--executor", "local", "-e",
                                 f"bench llm --url {url} --model sim --concurrency 2 --duration 30 --output-tokens 16 "
                                 f"--server-metrics-interval 0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        time.sleep(4)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, out
    folder = run_dir(out)
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "interrupted" and run["server_metrics_file"] == TIMELINE_FILE
    lines = lines_of(folder)
    point = run["points"][0]
    assert point["interrupted"] and point["server_timeline"]["samples"] >= 10
    assert len([line for line in lines if line["point"] == "concurrency 2"]) == point["server_timeline"]["samples"]
    assert max(series(line["values"], "vllm:num_requests_running") for line in lines) == 2


# ---- vector: Qdrant's /metrics; Chroma has none -----------------------------------------------------
class _QdrantMetricsHandler(_Handler):
    """The test Qdrant server plus ``GET /metrics`` with Qdrant's names, counted from the requests it served."""

    def do_GET(self) -> None:
        if self.path != "/metrics":
            return super().do_GET()
        served: dict[tuple[str, str], int] = {}
        for r in list(self.app.requests):
            endpoint = re.sub(r"^/collections/[^/]+", "/collections/{name}", r["path"])
            served[(r["method"], endpoint)] = served.get((r["method"], endpoint), 0) + 1
        with open("/proc/self/statm") as fh:
            resident = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        collections = len(self.app.client.get_collections().collections)
        lines = ["# TYPE app_info gauge", 'app_info{name="qdrant",version="test"} 1',
                 "# TYPE collections_total gauge", f"collections_total {collections}",
                 "# TYPE rest_responses_total counter"]
        lines += [f'rest_responses_total{{method="{m}",endpoint="{e}",status="200"}} {n}'
                  for (m, e), n in served.items()]
        lines += [f'rest_responses_duration_seconds_bucket{{method="{m}",endpoint="{e}",le="0.01"}} {n}'
                  for (m, e), n in served.items()]
        lines += ["# TYPE memory_resident_bytes gauge", f"memory_resident_bytes {resident}", "process_threads 9"]
        self._send(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4")


def test_bench_qdrant_samples_its_metrics_per_phase_and_point(app: App) -> None:
    server = QdrantTestServer()
    server.httpd.RequestHandlerClass = type("H", (_QdrantMetricsHandler,), {"app": server})
    server.start()
    try:
        assert app.run_line(f"bench vector --url {server.url} --store qdrant --n 1000 --dim 16 --queries 30 "
                            f"--concurrency 1,2 --duration 1 --server-metrics-interval 0.1"), output(app)
    finally:
        server.stop()
    assert no_sampler_threads()
    folder = run_dir(output(app))
    run = json.loads((folder / "run.json").read_text())
    assert run["server_metrics_file"] == TIMELINE_FILE and run["server_timeline"]["family"] == "qdrant"
    lines = lines_of(folder)
    labels = {line["point"] for line in lines}  # the serial phase may be shorter than one interval
    assert {"ingest", "concurrency 1", "concurrency 2"} <= labels <= {"", "ingest", "serial", "concurrency 1",
                                                                      "concurrency 2"}
    assert all(not k.startswith(("process_", "app_info")) and "_bucket" not in k for line in lines
               for k in line["values"])
    for point in run["points"]:
        timeline = point["server_timeline"]
        # The server's count of answered requests per second over the point, next to the client's QPS.
        assert 0.5 <= timeline["requests_per_s"] / point["qps"] <= 1.5, (timeline, point["qps"])
        assert timeline["resident_mib"]["peak"] > 10
    assert re.search(r"concurrency 2 +│ +\d+ +│ +\d+ / \d+", output(app)), output(app)  # req/s, RSS peak / mean


def test_bench_chroma_has_no_metrics_so_no_timeline_and_no_noise(
        app: App, chroma: tuple[subprocess.Popen[bytes], str]) -> None:  # noqa: F811
    assert STORES["chroma"].metrics == "" and STORES["qdrant"].metrics == QDRANT.name
    _, url = chroma
    assert app.run_line(f"bench vector --url {url} --store chroma --n 500 --dim 8 --queries 20 --concurrency 1 "
                        f"--duration 1 --server-metrics-interval 0.1"), output(app)
    folder = run_dir(output(app))
    run = json.loads((folder / "run.json").read_text())
    assert not (folder / TIMELINE_FILE).exists() and "server_timeline" not in run
    assert "server_timeline" not in run["points"][0] and "timeline" not in output(app)
    ui, buf = string_ui(width=80)
    ui.renderable(VectorKind().summary_view(read_run(folder)))
    assert "concurrency 1" in buf.getvalue() and "timeline" not in buf.getvalue()
