"""The explicit service registry: adding a service = one module, one template, one entry here."""

from __future__ import annotations

from pathlib import Path

from benchctl.services.base import Endpoint, ServiceContext, ServiceError, SlurmServer
from benchctl.services.chroma import Chroma
from benchctl.services.io500 import Io500
from benchctl.services.llmsim import LlmSim
from benchctl.services.ollama import Ollama
from benchctl.services.qdrant import Qdrant
from benchctl.services.vllm import Vllm
from benchctl.templates import find_resource_dir

SERVICES: dict[str, type[SlurmServer]] = {cls.name: cls for cls in (Chroma, Qdrant, Io500, Vllm, Ollama, LlmSim)}


def load_images(path: Path | None = None) -> dict[str, str]:
    """``sif/images.yaml``: service name → pinned image URI."""
    import yaml  # lazily: `help` and completion need the registry, not YAML

    path = path or find_resource_dir("sif") / "images.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in data.items()}


__all__ = ["SERVICES", "Endpoint", "ServiceContext", "ServiceError", "SlurmServer", "load_images"]
