"""Qdrant vector database: the ``qdrant`` binary on one node, ready when ``GET /readyz`` answers.

Qdrant reads its settings from ``config/*.yaml`` relative to its working directory, then from
``QDRANT__SECTION__KEY`` environment variables; the job script sets everything it needs through the
environment and runs from a writable directory on scratch (the image's own files are read-only).

An API key never reaches the batch script: ``--api-key-env VAR`` names an environment variable of the
submitting shell (sbatch passes that environment to the job), and the script reads ``$VAR`` at run time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from benchctl.executors.base import ExecutorError
from benchctl.executors.process import submission_env
from benchctl.jobs import Job
from benchctl.monitor.prom import Series
from benchctl.options import Complete, Option, valid_env_name
from benchctl.services.options import PORT, job_env_name
from benchctl.services.server import VectorServer
from benchctl.templates import TemplateError


class Qdrant(VectorServer):
    name = "qdrant"
    summary = "Qdrant vector database (REST API, optional gRPC)"
    template = "qdrant.sbatch.j2"
    metrics_path = "/metrics"
    key_series = (Series("collections", "collections_total"), Series("vectors", "collections_vector_total"),
                  Series("REST req/s", "rest_responses_total", counter=True),
                  Series("REST fail/s", "rest_responses_fail_total", counter=True))
    health_path = "/readyz"  # on Qdrant's auth whitelist: answers without the API key
    version_path = "/"
    auth = "api-key"  # QDRANT__SERVICE__API_KEY; --api-key-env VAR uses a key of the user's instead
    default_cpus = 4
    ready_timeout = 300
    # default_port stays 0 (the job picks a free port) although Qdrant's own default is 6333: compute nodes on
    # MeluXina are shared, and a second Qdrant (or anyone's) on 6333 would make the job fail at bind time.
    # benchctl records the port the job printed, so clients never need to guess; `--port 6333` pins it when
    # a tool insists on the well-known port. The same applies to --grpc-port (0 = another free port).
    extra_options: ClassVar[tuple[Option, ...]] = (
        Option("--grpc-port", "gRPC port (0: a free port picked on the node, like --port)", PORT, default=0,
               metavar="PORT"),
        Option("--api-key-env", "require an API key: the NAME of an environment variable that holds it (read by "
               "the job at run time, never written into the script)", job_env_name, metavar="VAR"),
        Option("--data-dir", "where qdrant keeps storage and snapshots (default: a new dir under {scratch}; "
               "/dev/shm/NAME = the node's RAM, for throwaway benchmark data)", metavar="DIR",
               complete=Complete.PATH),
    )

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        data_dir = values.get("data_dir") or str(
            Path(self.ctx.settings.expand("paths.scratch")) / "benchctl" / "qdrant" / run_dir.name)
        grpc_port = int(values.get("grpc_port") or 0)
        if grpc_port and grpc_port == int(values.get("port") or 0):
            raise TemplateError(f"--grpc-port {grpc_port} is also the REST port (--port); pick another")
        if str(data_dir).startswith(("/project", "/mnt/tier")):
            # Qdrant's documentation: it needs block storage and does not work on network file systems.
            self.ctx.site.say(f"qdrant: its data directory {data_dir} is on a network file system (Lustre); Qdrant "
                              "needs block storage and may fail or crawl there -- for throwaway benchmark data use "
                              "--data-dir /dev/shm/qdrant (the node's RAM, gone with the job)")
        key_env = str(values.get("api_key_env") or "")
        # Checked again here: a value that bypassed the option (a caller building values by hand) must still
        # never be spliced into ${...} in the script.
        if key_env and not valid_env_name(key_env):
            raise TemplateError(f"--api-key-env: {key_env!r} is not an environment variable name")
        return {"data_dir": str(data_dir), "grpc_port": grpc_port, "api_key_env": key_env}

    def scrapable(self, values: Mapping[str, Any]) -> bool:
        # Qdrant guards /metrics with its API key, which a shared Prometheus must not hold.
        return super().scrapable(values) and not self.auth_on(values) and not values.get("api_key_env")

    def auth_on(self, values: Mapping[str, Any]) -> bool:
        return super().auth_on(values) and not values.get("api_key_env")  # the user's own key wins

    def credentials(self, job: Job) -> dict[str, str]:
        var = job.options.get("api_key_env", "")
        if var:  # the user's key, from the variable they named (never stored by benchctl)
            key = os.environ.get(var, "")
            return {"api-key": key} if key else {}
        return super().credentials(job)

    def submit(self, values: Mapping[str, Any]) -> Job:
        key_env = str(values.get("api_key_env") or "")
        if key_env and not submission_env().get(key_env):
            # The job would only fail later on the compute node; say it now, before anything is queued.
            raise ExecutorError(f"--api-key-env {key_env}: ${key_env} is not set (or empty) in this shell; "
                                f"export it before 'start' (the job inherits this environment)")
        return super().submit(values)
