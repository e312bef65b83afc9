"""A REAL Prometheus and Pushgateway (Debian's, runtime none) as a monitor job on the real local Slurm, with a
service job registering itself: the target file appears -> Prometheus scrapes it (``up{service=...} == 1``
through its HTTP API) -> bench figures come back through the Pushgateway -> stop removes the target ->
Prometheus reports it gone. And nobody gets in without the job's password."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from benchctl.http import http_get

MISSING = [b for b in ("prometheus", "prometheus-pushgateway") if shutil.which(b) is None]
pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(bool(MISSING), reason=f"not installed: {MISSING} (scripts/setup.sh test)")]


def run(line: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, "-m", "benchctl", "-e", line], capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def query(base: str, auth: dict[str, str], promql: str) -> list[dict[str, object]]:
    status, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5, limit=None,
                            headers=auth)
    assert status == 200, (status, body)
    return list(json.loads(body)["data"]["result"])


def until(what: str, check, timeout: float = 30.0) -> float:  # type: ignore[no-untyped-def]
    """Poll ``check`` until true; the seconds it took (fails naming ``what`` after ``timeout``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(0.5)
    pytest.fail(f"{what} not within {timeout} s")


def test_targets_register_scrape_push_and_leave(slurm_config: Path, isolated_env: Path) -> None:
    out = run("start monitor --no-grafana --scrape-interval 1s; check monitor --wait --timeout 120; check monitor")
    run_dir = Path(out.split("logs in ", 1)[1].split()[0])
    creds = json.loads((run_dir / "credentials.json").read_text())
    import base64

    auth = {"Authorization": "Basic " + base64.b64encode(f"benchctl:{creds['key']}".encode()).decode()}
    prom = out.split("prometheus:", 1)[1].split()[0]
    try:
        # nobody else gets in: no password, a wrong one
        assert http_get(prom + "/api/v1/query?query=up", timeout=5)[0] == 401
        wrong = {"Authorization": "Basic " + base64.b64encode(b"benchctl:guess").decode()}
        assert http_get(prom + "/api/v1/query?query=up", timeout=5, headers=wrong)[0] == 401
        push = out.split("pushgateway:", 1)[1].split()[0]
        assert http_get(push + "/api/v1/metrics", timeout=5)[0] == 401

        started = run("start llm-sim --ttft-ms 20 --itl-ms 2 --exporters node; check llm-sim --wait --timeout 120")
        job_id = started.split("submitted llm-sim as job ", 1)[1].split()[0]
        target = run_dir / "targets" / f"llm-sim-{job_id}.json"
        assert target.exists(), list((run_dir / "targets").iterdir())
        labels = json.loads(target.read_text())[0]["labels"]
        assert labels["job_id"] == job_id and labels["node"] in ("n1", "n2") and labels["model"]

        def scraped() -> bool:
            return any(r["value"][1] == "1" for r in query(prom, auth, f'up{{service="llm-sim",job_id="{job_id}"}}'))

        took = until("Prometheus scraping the registered llm-sim", scraped)
        print(f"registered -> up==1 through the query API in {took:.1f} s")  # the closing note's figure
        # the node-exporter sidecar on the job's node, behind the monitor's password, scraped too
        exporter = run_dir / "targets" / "exporters" / f"{job_id}-node-{labels['node']}.json"
        assert exporter.exists(), list((run_dir / "targets").rglob("*"))
        until("the node exporter scraped", lambda: any(
            r["value"][1] == "1" for r in query(prom, auth, f'up{{job="exporters",job_id="{job_id}"}}')))
        assert query(prom, auth, f'node_load1{{job_id="{job_id}"}}')

        bench = run("bench llm-sim --concurrency 1,4 --duration 3", timeout=180)
        assert "pushed 2 point(s) to the monitor's Pushgateway" in bench, bench
        run_id = bench.split("(run_id ", 1)[1].split(")")[0]
        # Prometheus's own view of the run window, kept beside the run: llm-sim ran 4 requests at the peak
        kept_path = Path(bench.split("the monitor's view of the run: ", 1)[1].split()[0])
        kept = json.loads(kept_path.read_text())
        # the node-exporter sidecar sampled into the run's timeline beside the server
        timeline = [json.loads(line) for line in (kept_path.parent / "server_metrics.jsonl").read_text().splitlines()]
        assert any(t["target"].startswith("node@") and "node_load1" in t["values"] for t in timeline), timeline[:3]
        assert max(v for _, v in kept["series"]["running"]["values"]) == 4, kept["series"]["running"]
        assert kept["job_id"] == job_id and 'job_id="' + job_id + '"' in kept["series"]["running"]["promql"]
        until("the pushed figures in Prometheus",
              lambda: len(query(prom, auth, f'benchctl_bench_request_throughput{{run_id="{run_id}"}}')) == 2)
        ttft = query(prom, auth, f'benchctl_bench_ttft_p50_seconds{{run_id="{run_id}"}}')
        points = {r["metric"]["point"] for r in ttft}  # type: ignore[index]
        assert points == {"c=1", "c=4"}
        # forgetting the run deletes exactly its groups from the Pushgateway (what stopping the monitor does)
        from benchctl.monitor.push import Gateway, forget_run, groups

        gateway = Gateway(push, auth)
        assert sum(g.get("run_id") == run_id for g in groups(gateway)) == 2
        assert forget_run(gateway, run_id) == 2
        assert not any(g.get("run_id") == run_id for g in groups(gateway))
        # the server's own series, scraped while it served
        assert query(prom, auth, f'vllm:num_requests_running{{job_id="{job_id}"}}')

        run(f"stop {job_id}")
        assert not target.exists() and not exporter.exists()
        until("Prometheus dropping the stopped target",
              lambda: not query(prom, auth, f'up{{job_id="{job_id}"}}'), timeout=40)
    finally:
        subprocess.run([sys.executable, "-m", "benchctl", "-e", "stop all --yes"], capture_output=True, timeout=120)


def test_the_monitoring_session_in_one_line(slurm_config: Path, isolated_env: Path) -> None:
    """The issue's own acceptance line: everything in one `-e`, no waits written out (bench waits for the
    service, the service registers with the monitor that was queued first)."""
    out = run("start monitor --scrape-interval 1s; start llm-sim; bench llm-sim --concurrency 1,8 --duration 10; "
              "metrics llm-sim; stop llm-sim; stop monitor", timeout=400)
    assert "pushed 2 point(s) to the monitor's Pushgateway" in out, out
    # the sampled server view read back through the monitor's Prometheus: llm-sim ran 8 requests at the peak
    table = out.split("metrics (from the monitor", 1)[1]
    running = next(line for line in table.splitlines() if line.strip().startswith("running"))
    assert running.split("│")[3].strip() == "8", table
    run_dir = Path(out.split("results: ", 1)[1].split()[0]).parent
    assert (run_dir / "run.json").exists()
    assert "stopped monitor job" in out and "stopped llm-sim job" in out
