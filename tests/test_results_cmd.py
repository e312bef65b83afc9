"""``results`` and ``compare`` over real run folders written by the real ``RunWriter``: listing from the index,
filters, --json, --forget, regressions failing the command (and ``benchctl -e``'s exit status), 80 columns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchctl.app import App
from benchctl.bench.results import RunWriter, iter_runs, read_run
from benchctl.config import load_settings
from tests.conftest import string_ui
from tests.test_compare import llm_point
from tests.test_completion import completions


def write_run(home: Path, kind: str, service: str, points: list[dict[str, Any]],
              metrics: dict[str, Any] | None = None, model: str = "") -> str:
    writer = RunWriter(home, kind, service)
    result = writer.envelope(service={"name": service}, config={"model": model} if model else {},
                             metrics=metrics or {}, points=points, client_health={}, errors={})
    writer.finish(result)
    return writer.run_id


@pytest.fixture
def runs(app: App) -> dict[str, str]:
    """An LLM run, the same with TTFT doubled and throughput halved, a vector run and an IO500 run; oldest first."""
    home = app.home
    return {
        "llm": write_run(home, "llm", "vllm", [llm_point(1), llm_point(8)], model="meta-llama/Llama-3.1-8B"),
        "worse": write_run(home, "llm", "vllm", [llm_point(1, ttft=2.0, tput=0.5), llm_point(8, ttft=2.0, tput=0.5)],
                           model="meta-llama/Llama-3.1-8B"),
        "vector": write_run(home, "vector", "qdrant", [
            {"concurrency": c, "qps": 700.0 * c, "recall@10": 0.98 - c / 1000, "requests": 500, "errors": 0,
             "latency_ms": {"p50": 1.0 * c, "p99": 3.0 * c}} for c in (1, 4)]),
        "io500": write_run(home, "io500", "io500", [], {"score": {"total": 7.125, "bandwidth": 2.0, "iops": 25.4}}),
    }


def output(app: App) -> str:
    return app.out.getvalue()  # type: ignore[attr-defined,no-any-return]


def fresh(app: App, width: int = 120) -> App:
    app.ui, app.out = string_ui(width)  # type: ignore[attr-defined]
    return app


def test_results_lists_newest_first_with_headlines(app: App, runs: dict[str, str]) -> None:
    assert app.run_line("results")
    text = output(app)
    order = [text.index(runs[k]) for k in ("io500", "vector", "worse", "llm")]
    assert order == sorted(order)
    assert f"{2.5 * 8:.2f} req/s, TTFT 40/95 ms" in text and f"{2.5 * 8 * 0.5:.2f} req/s, TTFT 80/190 ms" in text
    assert "2800 QPS, recall 0.976" in text and "score 7.12" in text and "meta-llama/Llama-3.1-8B" in text


def test_filters_last_and_json(app: App, runs: dict[str, str]) -> None:
    assert app.run_line("results --kind llm")
    assert runs["llm"] in output(app) and runs["vector"] not in output(app) and runs["io500"] not in output(app)
    assert fresh(app).run_line("results --service qdrant --json")
    [row] = json.loads(output(app))["runs"]
    assert row["run_id"] == runs["vector"] and row["headline"] == {"qps": 2800.0, "point": "c=4", "recall": 0.976}
    assert fresh(app).run_line("results --last 2 --json")
    assert [r["run_id"] for r in json.loads(output(app))["runs"]] == [runs["io500"], runs["vector"]]
    assert fresh(app).run_line("results --last 2")
    assert "the newest 2 of 4" in output(app)


def test_forget_takes_a_run_out_of_the_listing_and_keeps_its_files(app: App, runs: dict[str, str]) -> None:
    assert app.run_line(f"results --forget {runs['worse'][:-2]}")  # a unique prefix
    folder = app.home / "results" / runs["worse"]
    assert f"its files stay in {folder}" in output(app)
    assert (folder / "run.json").is_file() and (folder / "requests.jsonl").exists()
    assert fresh(app).run_line("results --json --last 0")
    assert runs["worse"] not in {r["run_id"] for r in json.loads(output(app))["runs"]}
    assert fresh(app).run_line(f"compare {runs['llm']} {runs['worse']} --threshold throughput=off,p99=off")
    assert not fresh(app).run_line(f"results --forget {runs['worse']}")
    assert output(app).count("error:") == 1 and "no run" in output(app)


def test_old_and_damaged_index_lines(app: App, runs: dict[str, str]) -> None:
    index = app.home / "results" / "index.jsonl"
    lines = index.read_text().splitlines()
    old = json.loads(lines[0])  # the llm run as indexed before lines held headlines
    lines[0] = json.dumps({k: old[k] for k in ("run_id", "kind", "started_at", "service", "dir")})
    index.write_text("\n".join(lines) + '\n{"run_id": "20261201-trunc\n')
    assert [e.run_id for e in iter_runs(index.parent)] == list(runs.values())
    assert app.run_line("results")
    assert f"{2.5 * 8:.2f} req/s, TTFT 40/95 ms" in output(app) and "trunc" not in output(app)


def test_compare_flags_exactly_the_regressed_metrics_at_80_columns(app: App, runs: dict[str, str]) -> None:
    fresh(app, 80)
    assert not app.run_line(f"compare {runs['llm']} {runs['worse']}")
    text = output(app)
    # Everything fits but the error: one line by design (the terminal folds it; scripts grep it whole).
    assert max(len(line) for line in text.splitlines() if not line.startswith("error:")) <= 80
    flagged = {line.split("│")[1].strip() for line in text.splitlines() if line.rstrip().endswith("!")}
    assert flagged == {"req/s", "out tok/s", "TTFT p99 ms"}
    [error] = [line for line in text.splitlines() if line.startswith("error:")]
    assert "request_throughput, output_throughput, ttft_p99" in error


def test_five_runs_fit_80_columns_with_every_change_shown(app: App) -> None:
    ids = [write_run(app.home, "llm", "vllm", [llm_point(1, ttft=1 + i, tput=1 - i / 5, completed=100 - i, failed=i)],
                     model="meta-llama/Llama-3.1-8B-Instruct") for i in range(5)]
    assert not fresh(app, 80).run_line("compare " + " ".join(ids))
    lines = [line for line in output(app).splitlines() if not line.startswith("error:")]
    assert max(len(line) for line in lines) <= 80
    [header] = [line for line in lines if "METRIC" in line]
    assert header.split() == ["POINT", "┃", "METRIC", "┃", "A", "┃", "ΔB", "┃", "ΔC", "┃", "ΔD", "┃", "ΔE"]
    [ttft] = [line for line in lines if "TTFT p99" in line]
    assert [c.strip() for c in ttft.split("│")[3:]] == [f"+{100 * i:.1f}% !" for i in range(1, 5)]
    assert not fresh(app).run_line("compare " + " ".join([*ids, ids[0]]))
    assert "unexpected argument" in output(app)


def test_compare_same_run_passes_and_thresholds_change_the_verdict(app: App, runs: dict[str, str]) -> None:
    assert app.run_line(f"compare {runs['llm']} {runs['llm']}") and "no regression" in output(app)
    assert app.run_line(f"compare {runs['llm']} last~2 --threshold throughput=50,p99=100")
    assert not app.run_line(f"compare {runs['llm']} last~2 --threshold throughput=50,p99=99")


def test_config_thresholds_apply_below_the_option(make_app, isolated_env: Path) -> None:  # type: ignore[no-untyped-def]
    (isolated_env / "config.toml").write_text('[compare]\nthresholds = ["throughput=50", "p99=100"]\n')
    app = make_app()
    base = write_run(app.home, "llm", "vllm", [llm_point(1)])
    worse = write_run(app.home, "llm", "vllm", [llm_point(1, ttft=2.0, tput=0.5)])
    assert app.run_line(f"compare {base} {worse}")
    assert not app.run_line(f"compare {base} {worse} --threshold p99=50")


def test_mismatched_kinds_and_unknown_runs_are_one_error(app: App, runs: dict[str, str]) -> None:
    assert not app.run_line(f"compare {runs['llm']} {runs['vector']}")
    assert output(app).strip().splitlines() == [
        f"error: compare: runs of different kinds: {runs['llm']} is llm, {runs['vector']} is vector"]
    assert not fresh(app).run_line("compare last nosuchrun")
    assert output(app).count("\n") == 1 and "no run 'nosuchrun'" in output(app)
    assert not fresh(app).run_line("compare last 2026")  # a prefix of every run
    assert "matches 4 runs" in output(app)


def test_compare_takes_paths_and_prints_json(app: App, runs: dict[str, str]) -> None:
    folder = app.home / "results" / runs["vector"]
    assert app.run_line(f"compare {folder} {folder / 'run.json'} --json")
    data = json.loads(output(app))
    assert data["baseline"] == runs["vector"] and data["regressions"] == []
    assert {r["metric"] for r in data["rows"]} == {"qps", "recall", "latency_p50", "latency_p99", "success_rate"}


def test_run_ids_complete(app: App, runs: dict[str, str]) -> None:
    assert completions(app, "compare ") == ["last", *reversed(list(runs.values()))]
    assert completions(app, f"results --forget {runs['io500'][:-3]}") == [runs["io500"]]


def test_exit_status_of_batch_mode(app: App, runs: dict[str, str]) -> None:
    def run(line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", "-e", line],
                              env={**os.environ, "BENCHCTL_HOME": str(app.home)}, text=True, capture_output=True,
                              timeout=60)

    bad = run(f"compare {runs['llm']} {runs['worse']}")
    assert bad.returncode == 1 and "TTFT p99" in bad.stdout
    assert bad.stderr.count("error:") == 1 and "ttft_p99" in bad.stderr
    good = run(f"compare {runs['llm']} {runs['llm']}")
    assert good.returncode == 0 and good.stderr == ""


@pytest.mark.skipif(shutil.which("prometheus") is None or not (shutil.which("pushgateway") or shutil.which(
    "prometheus-pushgateway")), reason="prometheus/pushgateway not installed (scripts/setup.sh test)")
def test_forget_deletes_the_runs_figures_from_a_running_monitor() -> None:
    """A real monitor (local executor, no Grafana): two runs pushed, one forgotten; only its groups go."""
    from benchctl.monitor.push import groups, push_run
    from benchctl.services.monitor import Monitor

    ui, buf = string_ui()
    app = App(settings=load_settings(executor="local", profile="local"), ui=ui)
    try:
        assert app.run_line("start monitor --no-grafana") and app.run_line("check monitor --wait --timeout 60")
        monitor = app.service("monitor")
        assert isinstance(monitor, Monitor)
        job = monitor.active()
        gateway = monitor.gateway(job) if job is not None else None
        assert job is not None and gateway is not None
        gone, kept = (write_run(app.home, "llm", "vllm", [llm_point(1), llm_point(8)]) for _ in range(2))
        for run_id in (gone, kept):
            assert push_run(gateway, read_run(app.home / "results" / run_id)) == 2
        assert app.run_line(f"results --forget {gone}"), buf.getvalue()
        assert f"deleted 2 point group(s) of {gone} from the Pushgateway of monitor job {job.id}" in buf.getvalue()
        assert {g["run_id"] for g in groups(gateway)} == {kept}
    finally:
        for active in app.jobs.active():
            app.service(active.service).stop(active, grace=3, poll=0.2)
