"""llm-sim: benchctl's own simulated LLM server (``python3 -m benchctl.llmsim``), ready when ``GET /health``
answers.

It speaks vLLM's OpenAI API, Ollama's native API and vLLM's ``/metrics`` with exactly known timing (see
the ``benchctl.llmsim`` package), so LLM benchmark clients can be checked against the truth on the real cluster path
(batch script, node, network) without a GPU or model weights.

Runtime ``none`` (the practical one): the job runs the python benchctl was installed with -- the prelude puts
its bin directory first on PATH (``job.path_prepend``). Runtime ``apptainer`` runs the configured image only
when one is set (``--image`` or ``sif/images.yaml``; it must contain benchctl with its dependencies); without one the
job falls back to the host python the same way, since there is no public image of benchctl to pull.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.options import Option, integer, number
from benchctl.services.server import VLLM_SERIES, LlmServer

_MS = number(0)
_FRACTION = number(0, 1)


def _g(value: Any) -> str:
    """A decimal start value as the command line wants it (``50``, ``0.5``)."""
    return f"{float(value):g}"


class LlmSim(LlmServer):
    name = "llm-sim"
    summary = "simulated LLM server (OpenAI + Ollama APIs, vLLM metrics, exact timing; no GPU)"
    template = "llm-sim.sbatch.j2"
    metrics_path = "/metrics"
    key_series = VLLM_SERIES
    shown_options = ("model", "ttft_ms", "itl_ms", "output_tokens")
    health_path = "/health"
    version_path = "/api/version"
    default_cpus = 2
    ready_timeout = 120
    default_model = "sim"
    auth = "bearer"  # --api-key-env: guards /v1/* and the Ollama serving routes, as vLLM does
    server_args = ("model", "ttft_ms", "itl_ms", "output_tokens", "max_concurrency", "image", "runtime")
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--model", "served model name", default="sim", metavar="NAME"),
        Option("--ttft-ms", "time to first token once a slot is free, ms", _MS, default=50.0, metavar="MS"),
        Option("--itl-ms", "time between tokens, ms", _MS, default=10.0, metavar="MS"),
        Option("--output-tokens", "output length when a request sets no max_tokens", integer(1), default=128,
               metavar="N"),
        Option("--tokens-per-chunk", "tokens per streamed chunk", integer(1), default=1, metavar="N"),
        Option("--max-concurrency", "sequences served at once, the others queue", integer(1), default=256,
               metavar="N"),
        Option("--error-rate", "fraction of requests answered HTTP 500", _FRACTION, default=0.0, metavar="F"),
        Option("--disconnect-rate", "fraction of streams cut mid-way", _FRACTION, default=0.0, metavar="F"),
        Option("--invalid-rate", "fraction of structured-output answers that break their constraint",
               _FRACTION, default=0.0, metavar="F"),
        Option("--prefill-ms-per-1k", "TTFT added per 1,000 prompt tokens not in its prefix cache (0: flat)",
               _MS, default=0.0, metavar="MS"),
        Option("--seed", "seed of the error/disconnect/invalid draws (default: random)", integer(0), metavar="N"),
    )

    def uses_host_python(self, values: Mapping[str, Any]) -> bool:
        return values["runtime"] == "none" or not values.get("image")

    def job_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        job = super().job_values(values, run_dir)
        if self.uses_host_python(values):
            # No image: run benchctl's own python on the host, found through the prelude's PATH.
            job["runtime"] = "none"
            job["path_prepend"] = self.ctx.host_bin_dir
        return job

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        seed = values.get("seed")
        return {
            "model": str(values["model"]),
            **{k: int(values[k]) for k in ("output_tokens", "tokens_per_chunk", "max_concurrency")},
            **{k: _g(values[k]) for k in ("ttft_ms", "itl_ms", "error_rate", "disconnect_rate", "invalid_rate",
                                            "prefill_ms_per_1k")},
            "seed": None if seed is None or seed == "" else int(seed),
            "host_fallback": values["runtime"] == "apptainer" and self.uses_host_python(values),
        }
