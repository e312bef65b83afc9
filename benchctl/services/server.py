"""The two kinds of service: ``Server`` (long-lived, answers on an endpoint) and ``BatchRun`` (runs to
completion and leaves results).

``Server`` adds readiness (a health check on the endpoint), the endpoint itself and the benchmark target;
``LlmServer`` and ``VectorServer`` say which bench kind drives them and how (the default LLM backend and the
start options that describe the server; the vector store API). ``BatchRun`` is ready when it has finished
with results, and reads them as a ``RunResult``.
"""

from __future__ import annotations

import getpass
import json
import os
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from benchctl.http import http_get
from benchctl.jobs import Job
from benchctl.monitor.prom import Series
from benchctl.options import Option
from benchctl.services.base import ServiceError, SlurmServer
from benchctl.services.targets import EXPORTERS
from benchctl.slurm.states import JobState

if TYPE_CHECKING:
    from benchctl.bench.results import RunResult


@dataclass(frozen=True)
class Endpoint:
    """Where a ready service answers."""

    host: str
    port: int
    scheme: str = "http"
    path_prefix: str = ""

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path_prefix}"


# The series `metrics` shows for servers speaking vLLM's metric names (vLLM, llm-sim).
VLLM_SERIES = (Series("running", "vllm:num_requests_running"), Series("waiting", "vllm:num_requests_waiting"),
               Series("KV cache", "vllm:kv_cache_usage_perc"),
               Series("prompt tok/s", "vllm:prompt_tokens_total", counter=True),
               Series("gen tok/s", "vllm:generation_tokens_total", counter=True),
               Series("done/s", "vllm:request_success_total", counter=True),
               Series("preempt/s", "vllm:num_preemptions_total", counter=True))


class Server(SlurmServer):
    """A long-lived service: ready when its health endpoint answers; benchmarked by its ``bench_kind``."""

    health_path: ClassVar[str] = "/"
    version_path: ClassVar[str] = ""  # where the server states its version (the run manifest records it)
    default_port: ClassVar[int] = 0  # 0 = the job picks a free port on its node
    key_series: ClassVar[tuple[Series, ...]] = ()  # what `metrics SERVICE` shows (from metrics_path)

    @classmethod
    def start_options(cls) -> tuple[Option, ...]:
        return (*super().start_options(), EXPORTERS)

    def endpoint(self, job: Job) -> Endpoint | None:
        if not job.port:
            return None
        connect = self.ctx.settings.text("network.connect")
        host = {"localhost": "127.0.0.1", "node": job.host or job.nodes}.get(connect, job.endpoint_host)
        return Endpoint(host, job.port) if host else None

    def client_endpoint(self, job: Job) -> Endpoint | None:
        """The endpoint as benchctl itself connects to it (probes, bench): through an automatic local forward
        with the ssh executor, since a laptop cannot reach a compute node's port."""
        ep = self.endpoint(job)
        if ep is None:
            return None
        host, port = self.ctx.executor.reach(ep.host, ep.port)
        return Endpoint(host, port, ep.scheme, ep.path_prefix)

    def tunnel(self, job: Job, port: int) -> str:
        """The ssh command that brings the job's ``port`` to the user's machine ("" for a job run here)."""
        s = self.ctx.settings
        if job.executor == "ssh" and self.ctx.executor.name == "ssh":
            # benchctl runs on the laptop already: its own connection forwards the port.
            return f"'tunnel {job.id}' (a forward over benchctl's SSH connection)"
        host, node = s.text("tunnel.host"), job.host or job.nodes
        # A tunnel only makes sense to a compute node of a cluster: not for a job run here by the local executor.
        if not host or not node or job.executor == "local":
            return ""
        user = s.text("tunnel.user") or os.environ.get("USER") or getpass.getuser()
        return f"ssh -p {s.get('tunnel.port')} {user}@{host} -NL {port}:{node}:{port}"

    def probe(self, job: Job) -> bool:
        """One readiness check: the service's health endpoint answers 200."""
        ep = self.client_endpoint(job)
        return ep is not None and http_get(ep.url + self.health_path, headers=self.credentials(job))[0] == 200

    def stopped_inside(self, markers: dict[str, str]) -> bool:
        """The service ended inside a job that lives on (stop, the pre-time-limit USR1, a crash)."""
        return "STOPPED" in markers or "EXITED" in markers

    def is_ready(self, job: Job) -> bool:
        """Ready = the job is RUNNING, its own service said so (the READY marker, printed only once a process
        of the job's service listens on the port) and the health check answers now."""
        if job.state.is_final:
            raise ServiceError(self.failure_reason(job))
        if job.state is not JobState.RUNNING or not job.port:
            return False
        markers = self.log_info(job).markers
        if self.stopped_inside(markers):
            raise ServiceError(self.stopped_message(job))
        return "READY" in markers and self.probe(job)

    def stopped_message(self, job: Job) -> str:
        err = self.last_error_line(job)
        return (f"{job.label}: the service stopped inside the job (the job is still {job.state.value}; "
                f"'stop {job.id}' ends it)" + (f"; last error: {err}" if err else ""))

    def check_health(self, job: Job) -> Job:
        """Re-check a RUNNING job's service now and record the answer (``ready``/``health``): a service that
        was ready can stop, or stop answering, while its job lives on."""
        if job.state is not JobState.RUNNING or not job.port:
            return job
        markers = self.log_info(job).markers
        if self.stopped_inside(markers):
            ready, health = False, "stopped"
        elif "READY" in markers and self.probe(job):
            ready, health = True, ""
        else:
            ready, health = False, "not answering" if (job.ready or job.health) else ""
        return self.ctx.jobs.update(job.id, ready=ready, health=health) or job

    def failure_reason(self, job: Job) -> str:
        if job.state is JobState.COMPLETED and "READY" not in self.log_info(job).markers:
            # A server never ends by itself: one that ended before its READY marker failed to start, even with
            # exit code 0 (some servers exit 0 when they cannot bind their port).
            err = self.last_error_line(job)
            code = f", exit code {job.exit_code}" if job.exit_code is not None else ""
            return (f"{job.label} ended before it was ready ({job.state.value}{code})"
                    + (f"; last error: {err}" if err else f" — 'logs {job.id} --err' shows why"))
        return super().failure_reason(job)


def served_models(body: str) -> list[str]:
    """Model ids in a ``GET /v1/models`` answer (OpenAI list shape); [] for anything else."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return []
    return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)] if isinstance(
        data, list) else []


class LlmServer(Server):
    """An LLM inference server, benchmarked by the ``llm`` kind."""

    bench_kind = "llm"
    shown_options: ClassVar[tuple[str, ...]] = ("model",)
    # The wire protocol `bench SERVICE` speaks by default (a key of benchctl.bench.llm.BACKENDS).
    default_backend: ClassVar[str] = "openai"
    # Start options that describe the server (stored with every result; the rest are Slurm's).
    server_args: ClassVar[tuple[str, ...]] = ("model", "image", "runtime")
    # The model requests name when neither --model nor the job says.
    default_model: ClassVar[str] = ""

    def served_model(self, url: str, wanted: str, headers: dict[str, str] | None = None) -> str:
        """The model name requests should carry: ``wanted``, unless the server answers to another name."""
        return wanted


class VectorServer(Server):
    """A vector database, benchmarked by the ``vector`` kind through its store API."""

    bench_kind = "vector"

    @classmethod
    def vector_store(cls) -> str:
        """The store API the vector client speaks to it (a key of benchctl.bench.vector.STORES)."""
        return cls.name


class OneShot(SlurmServer):
    """A job that does one thing and ends (an image pull, a benchmark client): "ready" = it ended well."""

    @property
    def ready_word(self) -> str:
        return "finished"

    def is_ready(self, job: Job) -> bool:
        if not job.state.is_final:
            return False
        if job.state is JobState.COMPLETED and job.exit_code in (None, 0):
            return True
        raise ServiceError(self.failure_reason(job))


class BatchRun(OneShot):
    """A job that runs to completion (no endpoint): "ready" means finished with results."""

    results_name: ClassVar[str] = "results"  # what the user is told is missing when it ended without them

    @abstractmethod
    def has_results(self, job: Job) -> bool:
        """Whether the job left results to read."""

    @abstractmethod
    def results(self, job: Job) -> RunResult | None:
        """The job's results as a ``RunResult`` (None when it wrote none)."""

    def is_ready(self, job: Job) -> bool:
        if not job.state.is_final:
            return False
        if job.state is JobState.COMPLETED and self.has_results(job):
            return True
        raise ServiceError(self.failure_reason(job) if job.state is not JobState.COMPLETED else
                           f"{job.label} ended without {self.results_name} ('logs {job.id}' shows why)")

    def not_ready_message(self, job: Job, timeout: float) -> str:
        return f"{job.label} still {job.state.value} after {timeout:.0f} s — 'logs {job.id}' shows its progress"


__all__ = ["BatchRun", "Endpoint", "LlmServer", "OneShot", "Server", "VectorServer", "served_models"]
