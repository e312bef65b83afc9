"""Recipes (``run RECIPE``): checked whole before anything is submitted (one precise error naming file, line and
key), ``--set``, ``--dry-run``, ``--rerun``; the demo recipe end to end on the local executor with real
ChromaDB and llm-sim, a second run at double TTFT flagged by ``compare`` with a non-zero exit status; Ctrl-C
(a real SIGINT to a real benchctl) in the middle stops what the recipe started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchctl.app import App
from benchctl.recipe import RecipeError, parse
from benchctl.yamlfile import FileError
from tests.fakes import FakeSlurm

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def error_of(app: App, line: str) -> str:
    assert not app.run_line(line)
    errors = [x for x in app.out.getvalue().splitlines() if x.startswith("error:")]  # type: ignore[attr-defined]
    assert len(errors) == 1, app.out.getvalue()  # type: ignore[attr-defined]
    return errors[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("servics: []\n", ":1: servics: unknown key (did you mean 'services'?)"),
    ("services:\n  - service: chroma\n    options: {cpus: x}\n", ":3: services[0].options.cpus: --cpus expects"),
    ("services:\n  - service: chrome\n", ":2: services[0].service: unknown service 'chrome'"),
    ("benchmarks:\n  - target: llm-sim\n    options:\n      concurrency: [1, y]\n",
     ":4: benchmarks[0].options.concurrency: --concurrency expects"),
    ("benchmarks:\n  - target: llm-sim\n    repeat: 0\n", ":3: benchmarks[0].repeat: expected 1..100, got 0"),
    ("services:\n  - service: chroma\n    options: {port: 99999}\n", ":3: services[0].options.port"),
    ("services:\n  - service: vllm\n    options: {model: m, gpus-per-node: 8}\n",
     "8 GPUs per node, but the meluxina profile's nodes have 4"),
    ("services:\n  - service: chroma\n    options: {qos: test, time: '02:00:00'}\n",
     "--time 02:00:00 is above the test QOS limit of 00:30:00"),
    ("services: [\n", ":2: not valid YAML"),
    ("name: x\n", "nothing to do"),
])
def test_broken_recipes_give_one_precise_error_and_submit_nothing(make_app, fake_slurm: FakeSlurm,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path, text: str, expected: str) -> None:
    app = make_app()
    path = write(tmp_path, text)
    message = error_of(app, f"run {path}")
    assert expected in message and (path in message or "nothing to do" in message)
    assert not [c for c in fake_slurm.calls if c[0] == "sbatch"]


def test_set_changes_values_by_index_or_name_and_dry_run_prints_the_steps(local_app: App) -> None:
    recipe = parse(local_app, str(DEMO), ["services.llm-sim.ttft-ms=100", "benchmarks.1.options.duration=2",
                                          "benchmarks.chroma.options.concurrency=[2, 8]"])
    sim = next(s for s in recipe.starts if s.service == "llm-sim")
    assert sim.values["ttft_ms"] == 100.0 and recipe.benches[1].values["duration"] == 2.0
    assert recipe.benches[0].values["concurrency"] == [2, 8]
    assert recipe.context()["set"] == ["services.llm-sim.ttft-ms=100", "benchmarks.1.options.duration=2",
                                       "benchmarks.chroma.options.concurrency=[2, 8]"]
    with pytest.raises(RecipeError, match="no entry 'nope'"):
        parse(local_app, str(DEMO), ["services.nope.cpus=2"])
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        parse(local_app, str(DEMO), ["services"])
    with pytest.raises(FileError, match=r"ttft-ms: --ttft-ms"):
        parse(local_app, str(DEMO), ["services.llm-sim.ttft-ms=fast"])
    assert local_app.run_line(f"run {DEMO} --dry-run --set services.llm-sim.ttft-ms=100")
    out = local_app.out.getvalue()  # type: ignore[attr-defined]
    assert "start llm-sim --runtime none --ttft-ms 100" in out and "stop chroma, llm-sim" in out
    assert "nothing submitted" in out and not local_app.jobs.all()


def test_demo_recipe_end_to_end_then_double_ttft_is_a_regression(local_app: App) -> None:
    """The issue's done-when: the demo runs whole (start, wait, bench, stop) and a second run with llm-sim at
    double TTFT makes `compare` fail with exit status 1."""
    fast = ["benchmarks.chroma.options.n=2000", "benchmarks.chroma.options.duration=1",
            "benchmarks.llm-sim.options.duration=2", "benchmarks.llm-sim.options.concurrency=1,4"]
    sets = " ".join(f"--set {s}" for s in fast)
    assert local_app.run_line(f"run {DEMO} {sets}"), local_app.out.getvalue()  # type: ignore[attr-defined]
    assert not local_app.jobs.active()  # torn down
    first = local_app.last_run_id
    manifest = json.loads((local_app.home / "results" / first / "manifest.json").read_text())
    assert manifest["invocation"]["recipe"]["name"] == "demo"
    assert manifest["service"]["service"] == "llm-sim" and manifest["service"]["lifecycle"]["ready"]
    kinds = sorted(json.loads(line)["kind"] for line in (local_app.home / "results" / "index.jsonl").open())
    assert kinds == ["llm", "vector"]
    assert local_app.run_line(f"run {DEMO} {sets} --set services.llm-sim.ttft-ms=100")
    second = local_app.last_run_id
    done = subprocess.run([sys.executable, "-m", "benchctl", "--executor", "local", "-e",
                           f"compare {first} {second}"], env={**os.environ, "BENCHCTL_HOME": str(local_app.home)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "ttft_p99" in done.stderr, done.stdout + done.stderr


def test_rerun_repeats_a_run_from_its_manifest(local_app: App) -> None:
    assert local_app.run_line("start llm-sim --ttft-ms 20 --itl-ms 1")
    assert local_app.run_line("bench llm-sim --concurrency 2 --duration 1 --output-tokens 8")
    run_id = local_app.last_run_id
    assert local_app.run_line("stop llm-sim")
    assert local_app.run_line(f"run --rerun {run_id} --dry-run")
    out = local_app.out.getvalue()  # type: ignore[attr-defined]
    assert "start llm-sim" in out and "--ttft-ms 20" in out and "bench llm-sim --concurrency 2" in out
    assert local_app.run_line(f"run --rerun {run_id}")
    rerun = json.loads((local_app.home / "results" / local_app.last_run_id / "run.json").read_text())
    assert rerun["config"]["concurrency"] == [2] and rerun["manifest"]["invocation"]["recipe"]["document"]
    assert not local_app.jobs.active()


def test_ctrl_c_in_the_middle_stops_what_the_recipe_started(tmp_path: Path, isolated_env: Path) -> None:
    path = write(tmp_path, "services:\n  - service: llm-sim\n    options: {runtime: none}\n"
                           "benchmarks:\n  - target: llm-sim\n    options: {concurrency: 2, duration: 60}\n")
    env = {**os.environ, "BENCHCTL_HOME": str(tmp_path / "bc"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "benchctl", "--executor", "local", "run", path], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        seen.append(line)
        if "bench llm-sim" in line or time.monotonic() > deadline:
            break
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    text = "".join(seen) + rest
    assert "stopped llm-sim" in text, text
    jobs = json.loads((tmp_path / "bc" / "state" / "jobs.json").read_text())
    records = jobs["jobs"] if isinstance(jobs, dict) else jobs
    assert records and all(j["state"] in ("CANCELLED", "COMPLETED") for j in records), records
    assert proc.returncode != 0


@pytest.mark.parametrize("name", ["demo", "vllm-sweep", "vllm-2node", "ollama", "chroma", "qdrant", "io500"])
def test_every_example_recipe_checks_on_meluxina(make_app, fake_slurm: FakeSlurm, name: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    path = DEMO.parent / f"{name}.yaml"
    assert app.run_line(f"run {path} --dry-run"), app.out.getvalue()
    assert "nothing submitted" in app.out.getvalue() and "(" not in app.out.getvalue().split("step(s):")[1].split(
        "(dry run")[0].replace("(recipe", "")
    assert not [c for c in fake_slurm.calls if c[0] == "sbatch"]
