"""Golden batch scripts of every registered service: one test, parametrised over the service registry.

Each service has its cases below (runtime and its own options); the rendered script must equal
``tests/golden/<service>-<case>.sh`` and pass ``bash -n``. A service registered without cases fails
``test_every_registered_service_has_golden_cases``. After an intended template change, regenerate with

    BENCHCTL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

and review the diff like any other code change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchctl.services import SERVICES
from tests.test_templates import BASH, GOLDEN_DIR, RUNTIMES, assert_golden, bash_syntax_ok, service_for


@dataclass(frozen=True)
class Case:
    runtime: str
    options: dict[str, Any] = field(default_factory=dict)
    # Pinned here (not read from sif/images.yaml) so the golden files change only when the templates do.
    image: str = ""
    images: dict[str, str] = field(default_factory=dict)  # a job of several images (monitor)


VLLM = "meta-llama/Llama-3.1-8B-Instruct"
VLLM_IMAGE = "docker://vllm/vllm-openai:v0.30.0"
VLLM_RAY_IMAGE = "docker://vllm/vllm-openai:v0.10.1.1"  # the last kind of stock image that ships Ray
MONITOR_IMAGES = {"monitor-prometheus": "docker://prom/prometheus:v3.14.0",
                  "monitor-pushgateway": "docker://prom/pushgateway:v1.11.3",
                  "monitor-grafana": "docker://grafana/grafana:13.0.2"}
MONITOR_TARGETS = "/home/u/benchctl/jobs/monitor-X/targets"
EXPORTER_IMAGES = {"node-exporter": "docker://prom/node-exporter:v1.12.0",
                   "dcgm-exporter": "docker://nvcr.io/nvidia/k8s/dcgm-exporter:4.6.1-4.8.4-distroless"}
IO500_IMAGE = "docker://registry.example.org/benchctl/io500:test"

CASES: dict[str, dict[str, Case]] = {
    "chroma": {"apptainer": Case("apptainer", image="docker://chromadb/chroma:1.5.9"),
               "none": Case("none", image="docker://chromadb/chroma:1.5.9")},
    "qdrant": {"apptainer": Case("apptainer", {"api_key_env": "QDRANT_API_KEY"}, "docker://qdrant/qdrant:v1.19.1"),
               "none": Case("none", image="docker://qdrant/qdrant:v1.19.1")},
    "vllm": {"apptainer-2node-monitored": Case("apptainer", {"model": VLLM, "nodes": 2, "exporters": ("node", "dcgm"),
                                                     "monitor_targets": MONITOR_TARGETS},
                                          images={"vllm": VLLM_IMAGE, **EXPORTER_IMAGES}),
             **{f"{runtime}-{nodes}node": Case(runtime, {"model": VLLM, "nodes": nodes,
                                                         **({"venv": "/opt/vllm-cpu-venv"} if runtime == "none"
                                                            else {})}, VLLM_IMAGE)
                for runtime in RUNTIMES for nodes in (1, 2)},
             **{f"{runtime}-2node-ray": Case(runtime, {"model": VLLM, "nodes": 2, "backend": "ray",
                                                       **({"venv": "/opt/vllm-cpu-venv"} if runtime == "none"
                                                          else {})}, VLLM_RAY_IMAGE)
                for runtime in RUNTIMES}},
    "ollama": {"apptainer": Case("apptainer", {"model": "llama3.2", "parallel": 4, "max_loaded": 2},
                                 "docker://ollama/ollama:0.35.1"),
               "none": Case("none", {"model": "qwen3:4b"}, "docker://ollama/ollama:0.35.1")},
    "llm-sim": {"none": Case("none"),
                "none-monitored": Case("none", {"monitor_targets": MONITOR_TARGETS, "exporters": ("node",)}),
                "apptainer": Case("apptainer", {"seed": 7}),  # no image configured: host python fallback
                "apptainer-image": Case("apptainer", {"model": "llama-sim", "ttft_ms": 120.5, "itl_ms": 0.5,
                                                      "error_rate": 0.01},
                                        "oras://registry.example.org/benchctl/llmsim:0.1")},
    "monitor": {"apptainer": Case("apptainer", {"retention": "7d"}, images=MONITOR_IMAGES),
                "none": Case("none", {"no_grafana": True})},
    # pull's images come from the images table; the test table pins one image under the service's own name
    # The client job: benchctl itself, no container, so the runtime changes nothing but the prelude; the local
    # executor (the "none" case) starts the tasks itself, Slurm with one srun step.
    "bench-client": {runtime: Case(runtime, {"client_tasks": 4, "nodes": 2, "tasks_per_node": 2,
                                             "python": "/home/u/benchctl-venv/bin/python"}) for runtime in RUNTIMES},
    "pull": {"apptainer": Case("apptainer", {"images": "pull"}, "docker://chromadb/chroma:1.5.9")},
    "io500": {f"{runtime}-{nodes}node": Case(runtime, {"nodes": nodes, "tasks_per_node": 16}, IO500_IMAGE)
              for runtime in RUNTIMES for nodes in (1, 2)},
}
ALL = [(service, case) for service in SERVICES.names() for case in sorted(CASES.get(service, {}))]


def render(tmp_path: Path, service_name: str, case: Case) -> str:
    images = case.images or ({service_name: case.image} if case.image else {})
    service = service_for(service_name, tmp_path, case.runtime, images)
    values = service.resolve(case.options)
    assert values["runtime"] == case.runtime  # the profile's runtime, not an option, chose it
    return service.render(values, Path(f"/home/u/benchctl/jobs/{service_name}-X"))


def test_every_registered_service_has_golden_cases() -> None:
    assert set(SERVICES.names()) == set(CASES)
    assert all(CASES[name] for name in CASES)


@pytest.mark.usefixtures("fixed_env")
@pytest.mark.parametrize(("service", "case"), ALL, ids=[f"{s}-{c}" for s, c in ALL])
def test_golden(tmp_path: Path, service: str, case: str) -> None:
    script = render(tmp_path, service, CASES[service][case])
    assert script.startswith("#!/bin/bash -l\n")
    assert_golden(GOLDEN_DIR / f"{service}-{case}.sh", script)


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize(("service", "case"), ALL, ids=[f"{s}-{c}" for s, c in ALL])
def test_golden_files_pass_bash_n(service: str, case: str) -> None:
    ok, err = bash_syntax_ok((GOLDEN_DIR / f"{service}-{case}.sh").read_text())
    assert ok, err
