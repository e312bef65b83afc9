"""The monitor job's pieces that need no cluster: its files (passwords 0600, only a bcrypt hash in web.yml,
nothing secret in the script), Prometheus's configuration (checked by the real promtool), target registration
in other services' scripts, and what `bench` pushes (names, labels, the Pushgateway's base64 group paths)."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.bench.results import PointResult, RunResult
from benchctl.monitor.push import exposition, group_path, point_label
from benchctl.monitor.pushed import NAMES, PUSHED
from benchctl.services.monitor import Monitor, duration, prometheus_config
from tests.fakes import FakeSlurm
from tests.test_commands import fails_with, output

PROMTOOL = shutil.which("promtool")


def submitted_monitor(app: App, fake_slurm: FakeSlurm, line: str = "start monitor") -> tuple[Path, str]:
    assert app.run_line(line)
    job = app.jobs.latest_for("monitor")
    assert job is not None and job.run_dir
    return Path(job.run_dir), fake_slurm.jobs[job.id].script


def test_passwords_stay_in_0600_files_and_out_of_the_script(app: App, fake_slurm: FakeSlurm) -> None:
    import bcrypt

    run_dir, script = submitted_monitor(app, fake_slurm)
    creds = json.loads((run_dir / "credentials.json").read_text())
    password, grafana = creds["key"], creds["grafana_password"]
    assert password != grafana and len(password) >= 24
    for name in ("credentials.json", "web.yml", "monitor.password", "curl.conf"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o600, name
    web = (run_dir / "web.yml").read_text()
    assert password not in web
    hashed = web.split('"')[1]
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert not bcrypt.checkpw(b"wrong", hashed.encode())
    assert password not in script and grafana not in script and password not in output(app)
    # the job gets them in its environment (sbatch --export=ALL), never as text
    env = fake_slurm.jobs[app.jobs.latest_for("monitor").id].env  # type: ignore[union-attr]
    assert env["BENCHCTL_API_KEY"] == password and env["BENCHCTL_GRAFANA_PASSWORD"] == grafana


def test_monitor_always_requires_its_password(app: App) -> None:
    assert "--no-auth" in fails_with(app, "start monitor --no-auth")
    assert "not a Prometheus duration" in fails_with(app, "start monitor --scrape-interval 5 seconds")


def test_basic_auth_header_from_the_credentials(app: App, fake_slurm: FakeSlurm) -> None:
    run_dir, _ = submitted_monitor(app, fake_slurm)
    job = app.jobs.latest_for("monitor")
    monitor = app.service("monitor")
    assert isinstance(monitor, Monitor) and job is not None
    header = monitor.credentials(job)["Authorization"]
    user, password = base64.b64decode(header.split()[1]).decode().split(":", 1)
    assert user == "benchctl" and password == json.loads((run_dir / "credentials.json").read_text())["key"]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (scripts/setup.sh test installs it)")
def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    text = prometheus_config(str(tmp_path / "targets"), str(tmp_path / "pw"), "1s")
    (tmp_path / "pw").write_text("x")
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("@PROM_PORT@", "19090").replace("@PUSH_PORT@", "19091"))
    assert PROMTOOL is not None
    res = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("scrape_interval", "scrape_intervall"))
    assert subprocess.run([PROMTOOL, "check", "config", str(broken)], capture_output=True, timeout=60).returncode != 0


def test_grafana_files_are_copied_into_the_run_folder(app: App, fake_slurm: FakeSlurm) -> None:
    run_dir, script = submitted_monitor(app, fake_slurm)
    source = Path(__file__).resolve().parents[1] / "batch_templates" / "grafana"
    copied = sorted(p.relative_to(run_dir / "grafana") for p in (run_dir / "grafana").rglob("*") if p.is_file())
    assert copied == sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert 'GF_PATHS_PROVISIONING="$RUN_DIR/grafana/provisioning"' in script
    run_dir2, script2 = submitted_monitor(app, fake_slurm, "start monitor --no-grafana")
    assert not (run_dir2 / "grafana").exists() and "GF_PATHS" not in script2


def test_services_register_with_an_active_monitor(app: App, fake_slurm: FakeSlurm) -> None:
    assert app.run_line("start llm-sim --dry-run")
    assert "_bc_register" not in output(app)  # no monitor: nothing to register with
    run_dir, _ = submitted_monitor(app, fake_slurm)
    assert app.run_line("start llm-sim")
    script = fake_slurm.jobs[app.jobs.latest_for("llm-sim").id].script  # type: ignore[union-attr]
    assert f"_BC_TARGET={run_dir}/targets/llm-sim-" in script
    assert "trap 'rm -f \"$_BC_TARGET\" \"$_BC_TARGET.tmp\"' EXIT" in script
    entry = json.loads(script.split("printf '%s\\n' '", 1)[1].split("'", 1)[0])
    assert entry[0]["labels"]["__metrics_path__"] == "/metrics" and entry[0]["labels"]["service"] == "llm-sim"
    assert app.run_line("start chroma")  # no metrics endpoint: not registered
    assert "_bc_register" not in fake_slurm.jobs[app.jobs.latest_for("chroma").id].script  # type: ignore[union-attr]
    assert app.run_line("start qdrant")  # its /metrics needs the job's own key: not registered
    assert "_bc_register" not in fake_slurm.jobs[app.jobs.latest_for("qdrant").id].script  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["5s", "500ms", "30d", "1h30m"])
def test_durations(text: str) -> None:
    assert duration(text) == text


def test_pushed_figures_of_an_llm_point() -> None:
    result = RunResult(kind="llm", service={"name": "vllm"}, config={"model": 'meta-llama/x"y'}, run_id="r1",
                       points=[PointResult({"concurrency": 8, "request_throughput": 2.5, "p50_ttft_ms": 120.0,
                                            "p99_ttft_ms": float("nan"), "completed": 40})])
    text = exposition(result, result.points[0].to_dict())
    assert 'benchctl_bench_ttft_p50_seconds{service="vllm",model="meta-llama/x\\"y",kind="llm"} 0.12' in text
    assert "benchctl_bench_request_throughput{" in text and "p99" not in text  # NaN is not pushed
    assert {line.split("{")[0] for line in text.splitlines() if not line.startswith("#")} <= NAMES


def test_pushed_figures_of_a_vector_point() -> None:
    point = {"concurrency": 4, "qps": 900.0, "recall@10": 0.97, "latency_ms": {"p50": 2.0, "p99": 9.0}}
    values = {p.name: p.value(point) for p in PUSHED if p.value(point) is not None}
    assert values == {"benchctl_bench_qps": 900.0, "benchctl_bench_recall": 0.97,
                      "benchctl_bench_latency_p50_seconds": 0.002, "benchctl_bench_latency_p99_seconds": 0.009}


def test_group_paths_carry_any_label_value() -> None:
    path = group_path("20261203-llm-vllm-ab12", "rate=2.5")
    parts = path.split("/")
    assert parts[:4] == ["", "metrics", "job", "benchctl"] and parts[4] == "run_id@base64"
    assert base64.urlsafe_b64decode(parts[7] + "==").decode() == "rate=2.5"
    assert point_label({"rate": None, "concurrency": 8}, 0) == "c=8"
    assert point_label({"rate": 2.0, "concurrency": None}, 0) == "rate=2.0"
    assert point_label({}, 2) == "point3"


def test_exporters_need_a_monitor_and_known_kinds(app: App, fake_slurm: FakeSlurm) -> None:
    assert "exporters are node, dcgm" in fails_with(app, "start llm-sim --exporters gpu")
    assert "no monitor runs" in fails_with(app, "start llm-sim --exporters node")
    run_dir, _ = submitted_monitor(app, fake_slurm)
    assert app.run_line("start chroma --exporters node,dcgm")  # chroma has no /metrics, its node still does
    out = output(app)
    assert "no GPUs in this job, so no DCGM exporter" in out
    script = fake_slurm.jobs[app.jobs.latest_for("chroma").id].script  # type: ignore[union-attr]
    assert f"_BC_EXPORTER_DIR={run_dir}/targets/exporters _BC_WEB_CONFIG={run_dir}/web.yml" in script
    assert "_bc_exporter node\n" in script and "_bc_exporter dcgm" not in script
    assert "prom/node-exporter" in script  # meluxina: the pinned image, pulled once
    assert app.run_line("start vllm --model m --exporters node,dcgm")  # GPU nodes: both
    script = fake_slurm.jobs[app.jobs.latest_for("vllm").id].script  # type: ignore[union-attr]
    assert "_bc_exporter node\n_bc_exporter dcgm\n" in script and "apptainer exec --nv \"$SIF_EXPORTER_DCGM\"" in script



def test_metrics_without_a_monitor_samples_the_service(local_app: App) -> None:
    """A real llm-sim (local executor): `metrics` reads its /metrics twice and shows the key series; a
    service without a metrics endpoint, an unknown target and a typo are one line each."""
    assert local_app.run_line("start llm-sim --ttft-ms 1 --itl-ms 1 --output-tokens 4")
    assert local_app.run_line("check llm-sim --wait --timeout 30"), output(local_app)
    assert local_app.run_line("bench llm-sim --requests 8 --concurrency 2 --output-tokens 4")
    assert local_app.run_line("metrics llm-sim"), output(local_app)
    text = output(local_app).split("metrics (its /metrics", 1)[1]
    rows = {line.split("│")[0].strip(): [c.strip() for c in line.split("│")[1:]] for line in text.splitlines()
            if "│" in line}
    assert rows["running"][0] == "0" and rows["waiting"][0] == "0"
    assert rows["KV cache"][0] == "-"  # llm-sim does not expose it: said, not invented
    assert "no monitor job tracked" in fails_with(local_app, "metrics monitor")
    assert "neither a tracked job id nor a service" in fails_with(local_app, "metrics lm-sim")
