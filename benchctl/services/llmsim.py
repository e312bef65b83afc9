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

from benchctl.services.base import SlurmServer
from benchctl.services.options import Option
from benchctl.templates import TemplateError


def _number(values: Mapping[str, Any], key: str, flag: str, *, upper: float | None = None) -> str:
    """A non-negative decimal option as text for the command line (``50``, ``0.5``); TemplateError if bad."""
    raw = values.get(key)
    try:
        value = float(str(raw))
    except ValueError:
        raise TemplateError(f"llm-sim {flag}: expected a number, got {raw!r}") from None
    if not value >= 0 or (upper is not None and value > upper) or value != value or value == float("inf"):
        bound = f"between 0 and {upper:g}" if upper is not None else ">= 0"
        raise TemplateError(f"llm-sim {flag}: expected a number {bound}, got {raw!r}")
    return f"{value:g}"


class LlmSim(SlurmServer):
    name = "llm-sim"
    summary = "simulated LLM server (OpenAI + Ollama APIs, vLLM metrics, exact timing; no GPU)"
    template = "llm-sim.sbatch.j2"
    shown_options = ("model", "ttft_ms", "itl_ms", "output_tokens")
    health_path = "/health"
    default_cpus = 2
    ready_timeout = 120
    bench_kind = "llm"
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--model", "str", "served model name (default sim)", default="sim", metavar="NAME"),
        Option("--ttft-ms", "str", "time to first token once a slot is free, ms (default 50)", default="50",
               metavar="MS"),
        Option("--itl-ms", "str", "time between tokens, ms (default 10)", default="10", metavar="MS"),
        Option("--output-tokens", "int", "output length when a request sets no max_tokens (default 128)",
               default=128, metavar="N"),
        Option("--tokens-per-chunk", "int", "tokens per streamed chunk (default 1)", default=1, metavar="N"),
        Option("--max-concurrency", "int", "sequences served at once, the others queue (default 256)",
               default=256, metavar="N"),
        Option("--error-rate", "str", "fraction of requests answered HTTP 500 (default 0)", default="0",
               metavar="F"),
        Option("--disconnect-rate", "str", "fraction of streams cut mid-way (default 0)", default="0",
               metavar="F"),
        Option("--seed", "int", "seed of the error/disconnect draws (default: random)", metavar="N"),
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
        model = str(values.get("model") or "").strip()
        if not model:
            raise TemplateError("llm-sim --model: empty name")
        positive = {k: int(values.get(k) or 0) for k in ("output_tokens", "tokens_per_chunk", "max_concurrency")}
        for key, n in positive.items():
            if n < 1:
                raise TemplateError(f"llm-sim --{key.replace('_', '-')}: expected a whole number >= 1, got {n}")
        seed = values.get("seed")
        return {
            "model": model, **positive,
            "ttft_ms": _number(values, "ttft_ms", "--ttft-ms"), "itl_ms": _number(values, "itl_ms", "--itl-ms"),
            "error_rate": _number(values, "error_rate", "--error-rate", upper=1.0),
            "disconnect_rate": _number(values, "disconnect_rate", "--disconnect-rate", upper=1.0),
            "seed": None if seed is None or seed == "" else int(seed),
            "host_fallback": values["runtime"] == "apptainer" and self.uses_host_python(values),
        }
