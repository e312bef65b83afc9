"""Ollama LLM server: ``ollama serve`` on one GPU node; ready when ``GET /api/tags`` lists the model.

The job starts the server, waits until it accepts connections, then pulls ``--model`` into the models dir
(on scratch, shared by every Ollama job of the user) unless ``ollama list`` already has it. The HTTP check
alone would call the server ready before the model is there, so ``probe`` also looks for the model in
``/api/tags``. Ollama names carry a tag: ``llama3.2`` is ``llama3.2:latest``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.http import http_get
from benchctl.jobs import Job
from benchctl.options import Complete, Option, integer
from benchctl.services.server import LlmServer
from benchctl.templates import TemplateError

TAGS_PATH = "/api/tags"


def with_tag(name: str) -> str:
    """``llama3.2`` -> ``llama3.2:latest``; a name that has a tag (``qwen3:4b``) stays as it is.

    Only the last path part can carry the tag: in ``host:5000/ns/model`` the colon belongs to the host.
    """
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def model_listed(tags_body: str, model: str) -> bool:
    """Whether an ``/api/tags`` answer (``{"models": [{"name": ..., "model": ...}, ...]}``) lists ``model``."""
    if not model:
        return False
    try:
        data = json.loads(tags_body)
    except ValueError:
        return False
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return False
    wanted = with_tag(model)
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for key in ("name", "model"):
            value = entry.get(key)
            if isinstance(value, str) and value and with_tag(value) == wanted:
                return True
    return False


class Ollama(LlmServer):
    name = "ollama"
    summary = "Ollama LLM server (ollama serve; pulls --model on first use)"
    template = "ollama.sbatch.j2"
    shown_options = ("model", "parallel")
    health_path = TAGS_PATH  # 200 once the server is up; probe() also requires the model to be listed
    version_path = "/api/version"
    uses_gpu = True
    default_cpus = 8
    ready_timeout = 600  # bound of the job's own "is the server up" loops (not of the model download)
    default_backend = "ollama"
    no_auth_note = "Ollama has no authentication: anyone on the cluster who finds the port can use its models"
    server_args = ("model", "parallel", "max_loaded", "image", "runtime")
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--model", "model to serve, e.g. llama3.2 or qwen3:4b (pulled when missing)",
               metavar="M", required=True),
        Option("--parallel", "requests served in parallel per model (OLLAMA_NUM_PARALLEL; default: Ollama's)",
               integer(0), metavar="N"),
        Option("--max-loaded", "models kept loaded at once (OLLAMA_MAX_LOADED_MODELS; default: Ollama's)",
               integer(0), metavar="N"),
        Option("--models-dir", "where models are stored, shared between jobs (OLLAMA_MODELS; default "
               "{scratch}/benchctl/ollama-models)", metavar="DIR", complete=Complete.PATH),
    )

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        model = str(values.get("model") or "").strip()
        if not model:
            raise TemplateError("ollama needs --model (e.g. --model llama3.2); the job pulls it when the "
                                "models dir lacks it")
        models_dir = values.get("models_dir") or str(
            Path(self.ctx.settings.expand("paths.scratch")) / "benchctl" / "ollama-models")
        return {"model": model, "models_dir": str(models_dir),
                "parallel": int(values.get("parallel") or 0), "max_loaded": int(values.get("max_loaded") or 0)}

    def probe(self, job: Job) -> bool:
        """Ready = ``/api/tags`` answers 200 AND lists the job's model (pulled, so requests will not 404)."""
        ep = self.endpoint(job)
        if ep is None:
            return False
        status, body = http_get(ep.url + TAGS_PATH)
        return status == 200 and model_listed(body, job.options.get("model", ""))
