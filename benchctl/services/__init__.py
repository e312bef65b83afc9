"""The explicit service registry: adding a service = one module, one template, one entry here.

``SERVICES`` holds the classes by name; every ``App`` works on its own copy (``app.services``), so a service
defined outside the package (a plug-in, a test) registers for one session with ``app.services.register``.
"""

from __future__ import annotations

from pathlib import Path

from benchctl.registry import Registry
from benchctl.services.base import ServiceContext, ServiceError, SlurmServer
from benchctl.services.benchclient import BenchClient
from benchctl.services.chroma import Chroma
from benchctl.services.io500 import Io500
from benchctl.services.llmsim import LlmSim
from benchctl.services.monitor import Monitor
from benchctl.services.ollama import Ollama
from benchctl.services.pull import Pull
from benchctl.services.qdrant import Qdrant
from benchctl.services.server import BatchRun, Endpoint, LlmServer, Server, VectorServer
from benchctl.services.vllm import Vllm
from benchctl.templates import find_resource_dir

SERVICES: Registry[type[SlurmServer]] = Registry(
    "service", (Chroma, Qdrant, Io500, Vllm, Ollama, LlmSim, Monitor, Pull, BenchClient), key=lambda cls: cls.name)


def load_images(path: Path | None = None) -> dict[str, str]:
    """``sif/images.yaml``: service name → pinned image URI."""
    import yaml  # lazily: `help` and completion need the registry, not YAML

    path = path or find_resource_dir("sif") / "images.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    return {str(k): str(v) for k, v in data.items()}


__all__ = ["SERVICES", "BatchRun", "Endpoint", "LlmServer", "Server", "ServiceContext", "ServiceError",
           "SlurmServer", "VectorServer", "load_images"]
