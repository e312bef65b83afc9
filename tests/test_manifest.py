"""The run manifest: what a job printed of its node (modules, GPUs, the image's digest, the HF cache) read into
the manifest; the model's snapshot revision; and a real run's manifest against a real llm-sim (settings with
their sources, the line as typed, the engine's own version, lifecycle and cold start)."""

from __future__ import annotations

import json
from pathlib import Path

from benchctl.app import App
from benchctl.bench.manifest import engine_version, job_facts
from benchctl.jobs import Job
from benchctl.slurm.states import JobState

LOG = """\
BENCHCTL_MODULES=env/release/2025.1:Apptainer/1.4.2-GCCcore-14.2.0
BENCHCTL_GPU=4, NVIDIA A100-SXM4-40GB, 550.54.15
BENCHCTL_T_STARTED=1000.5
BENCHCTL_JOBID=4242
BENCHCTL_HF_CACHE={cache}
BENCHCTL_IMAGE=/scratch/sif/vllm.sif
BENCHCTL_IMAGE_DIGEST=sha256:3f2a9c0d1e4b5a6978877665544332211aabbccddeeff00112233445566778899
BENCHCTL_T_IMAGE=1003.5
BENCHCTL_T_READY=1063.5
"""


def vllm_job(tmp_path: Path, model: str) -> Job:
    cache = tmp_path / "hf-cache"
    log = tmp_path / "slurm-4242.out"
    log.write_text(LOG.format(cache=cache))
    return Job(id="4242", service="vllm", executor="local", state=JobState.RUNNING, nodes="mel2001",
               host="mel2001", submitted_at=990.5, out_path=str(log), err_path=str(tmp_path / "none.err"),
               options={"model": model, "partition": "gpu", "qos": "default", "time": "02:00:00",
                        "image": "docker://vllm/vllm-openai:v0.30.0", "runtime": "apptainer"})


def test_job_facts_read_the_jobs_own_lines(local_app: App, tmp_path: Path) -> None:
    job = vllm_job(tmp_path, "meta-llama/Llama-3.1-8B-Instruct")
    snapshot = tmp_path / "hf-cache" / "hub" / "models--meta-llama--Llama-3.1-8B-Instruct" / "refs"
    snapshot.mkdir(parents=True)
    (snapshot / "main").write_text("0e9e39f249a16976918f6564b8830bc894c89659\n")
    facts = job_facts(local_app, job)
    assert facts["modules"] == ["env/release/2025.1", "Apptainer/1.4.2-GCCcore-14.2.0"]
    assert facts["gpu"] == "4, NVIDIA A100-SXM4-40GB, 550.54.15"
    assert facts["image"]["sha256"].startswith("3f2a9c0d") and facts["image"]["path"] == "/scratch/sif/vllm.sif"
    assert facts["model_revision"] == "0e9e39f249a16976918f6564b8830bc894c89659"
    assert facts["partition"] == "gpu" and facts["qos"] == "default" and facts["time_limit"] == "02:00:00"
    assert facts["cold_start"] == {"queued_s": 10.0, "image_s": 3.0, "pulled": False, "start_to_ready_s": 60.0,
                                   "total_s": 73.0}
    assert facts["lifecycle"]["ready"].startswith("1970-01-01T00:17:43.5")


def test_no_revision_for_a_local_model_path_or_a_cache_without_it(local_app: App, tmp_path: Path) -> None:
    assert "model_revision" not in job_facts(local_app, vllm_job(tmp_path, "/models/tiny"))
    assert "model_revision" not in job_facts(local_app, vllm_job(tmp_path, "org/not-downloaded"))


def test_unreachable_version_endpoint_is_left_out() -> None:
    assert engine_version("http://127.0.0.1:9", "/version") is None
    assert engine_version("", "/version") is None and engine_version("http://x", "") is None


def test_a_real_runs_manifest(local_app: App) -> None:
    assert local_app.run_line("start llm-sim --ttft-ms 20 --itl-ms 1")
    assert local_app.run_line("bench llm-sim --concurrency 2 --duration 1 --output-tokens 8")
    folder = local_app.home / "results" / local_app.last_run_id
    manifest = json.loads((folder / "manifest.json").read_text())
    assert json.loads((folder / "run.json").read_text())["manifest"] == manifest
    assert manifest["invocation"]["line"] == "bench llm-sim --concurrency 2 --duration 1 --output-tokens 8"
    assert manifest["executor"] == "local" and manifest["profile"] == "local"
    assert manifest["settings"]["executor"] == {"value": "local", "source": "option"}
    assert manifest["settings"]["slurm.time"]["source"] in ("profile local", "default", "built-in default") or \
        manifest["settings"]["slurm.time"]["source"]
    assert manifest["bench"]["options"] == {"concurrency": [2], "duration": 1.0, "output_tokens": 8}
    service = manifest["service"]
    assert service["service"] == "llm-sim" and service["engine_version"] == {"version": "0.0.0-llmsim"}
    assert service["start_options"]["ttft_ms"] == "20.0" or service["start_options"]["ttft_ms"] == "20"
    assert service["cold_start"]["start_to_ready_s"] > 0 and service["lifecycle"]["ready"]
    assert manifest["benchctl"]["version"] and "modules" in service  # LOADEDMODULES unset here: an empty list
