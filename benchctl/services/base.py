"""``SlurmServer``: the life cycle every service shares -- render, submit, track, wait, logs, stop.

Two kinds derive from it (``services/server.py``): ``Server`` (long-lived, with readiness, an endpoint and
a benchmark client) and ``BatchRun`` (runs to completion and leaves results, like IO500). A concrete
service is declarative (see ``chroma.py``): a name, a template, its own options and the extra template
values it needs. Every read or write of a job's files goes through the executor's ``JobFiles``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from benchctl.config import Settings
from benchctl.errors import UserError
from benchctl.executors.base import Executor, ExecutorError, UnknownJob
from benchctl.executors.files import JobFiles, tail_lines
from benchctl.jobs import Job, JobTable, TableReadOnly
from benchctl.options import Option
from benchctl.services.options import COMMON_OPTIONS, NO_AUTH
from benchctl.services.site import Site
from benchctl.services.targets import exporter_values, monitor_targets, target_json
from benchctl.slurm import logparse
from benchctl.slurm.states import JobState
from benchctl.tracking import read_log_info, refresh_jobs

if TYPE_CHECKING:
    from benchctl.services.server import Endpoint
    from benchctl.templates import Renderer

log = logging.getLogger(__name__)

MAX_QUERY_FAILURES = 5
CREDENTIALS = "credentials.json"  # in the job's run folder, 0600: the key benchctl gave the job
KEY_VARIABLE = "BENCHCTL_API_KEY"  # how the key reaches the job: its environment, never the script


class ServiceError(UserError, RuntimeError):
    """A service action failed for a reason the user should read (job failed, timeout, ...)."""


@dataclass
class ServiceContext:
    """What services need from the application; one per App."""

    settings: Settings
    executor: Executor
    jobs: JobTable
    renderer: Renderer
    images: Mapping[str, str]
    host_bin_dir: str  # put on PATH in runtime-none jobs (where `chroma` etc. were installed)
    _site: Site | None = field(default=None, repr=False)
    python: str = ""  # the python jobs run benchctl's own code with ("" = this one: sys.executable)

    @property
    def files(self) -> JobFiles:
        return self.executor.files

    @property
    def site(self) -> Site:
        """The site's rules for a start (account, scratch, QOS limits), asked of the scheduler once."""
        if self._site is None:
            self._site = Site(self.settings, self.executor)
        return self._site


def sif_path(settings: Settings, image: str, fallback: str) -> str:
    """Where an image's SIF is cached: named after the image's last path part and tag (chroma_1.5.9.sif)."""
    name = image.rsplit("/", 1)[-1].replace(":", "_") + ".sif" if image else f"{fallback}.sif"
    return str(Path(settings.expand("container.sif_dir")) / name)


def option_text(value: Any) -> str:
    """A start value as the job table stores it (``50`` for 50.0: it reads back as the user wrote it)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


class SlurmServer(ABC):
    """Base of all services. Subclasses set the class attributes and may add template values."""

    name: ClassVar[str]
    summary: ClassVar[str]
    template: ClassVar[str]
    # A folder with the service's template, searched before batch_templates/ (a service defined outside the
    # package brings its own; `_macros.j2` is still found).
    template_dir: ClassVar[Path | None] = None
    uses_gpu: ClassVar[bool] = False
    default_cpus: ClassVar[int] = 2
    ready_timeout: ClassVar[int] = 600
    extra_options: ClassVar[tuple[Option, ...]] = ()
    metrics_path: ClassVar[str] = ""  # its Prometheus endpoint ("" = none): a running monitor scrapes it
    startable: ClassVar[bool] = True  # False: submitted by a command of its own (pull), not by `start`
    bench_kind: ClassVar[str | None] = None  # the benchmark client `bench SERVICE` runs ("vector", "llm", ...)
    # Start options worth a line in `check` (e.g. the model an LLM server serves).
    shown_options: ClassVar[tuple[str, ...]] = ()
    # How often wait_ready polls at most; batch runs that take hours override it.
    max_poll_interval: ClassVar[float] = 5.0
    # How the service admits its owner only: "bearer" (Authorization: Bearer KEY), "api-key" (an api-key
    # header), or "" (it has no authentication: anyone on the cluster who finds the port gets in).
    auth: ClassVar[str] = ""
    # Said by `check` for a service without authentication (what the user should know about that).
    no_auth_note: ClassVar[str] = "it has no authentication: anyone on the cluster who finds the port can use it"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    @property
    def files(self) -> JobFiles:
        return self.ctx.files

    # ---- declaration -----------------------------------------------------------------------
    @classmethod
    def start_options(cls) -> tuple[Option, ...]:
        return COMMON_OPTIONS + cls.extra_options + ((NO_AUTH,) if cls.auth else ())

    def auth_on(self, values: Mapping[str, Any]) -> bool:
        """Whether benchctl gives this job a key of its own (the default where the service supports one)."""
        return bool(self.auth) and not values.get("no_auth")

    def default_cpu_count(self) -> int:
        """CPUs per task when --cpus is not given (GPU services size it from the site profile)."""
        return self.default_cpus

    def template_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        """Service-specific template variables (besides ``job``)."""
        return {}

    def prepare_run_dir(self, values: Mapping[str, Any], run_dir: Path) -> None:
        """Write files the job needs next to job.sh (e.g. IO500's INI); raise TemplateError on bad values."""
        return None  # servers need nothing but the script

    # ---- render / submit ---------------------------------------------------------------------
    def resolve(self, options: Mapping[str, Any], recipe: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Effective start values: command option > recipe > settings (user config > profile > default)."""
        s = self.ctx.settings
        values: dict[str, Any] = {
            "partition": s.text("slurm.partition_gpu" if self.uses_gpu else "slurm.partition_cpu"),
            "account": s.text("slurm.account"), "qos": s.text("slurm.qos"), "time": s.text("slurm.time"),
            "reservation": s.text("slurm.reservation"),
            "cpus": self.default_cpu_count(), "mem": "", "nodes": 1,
            "gpus": int(s.get("node.gpus")) if self.uses_gpu else 0,
            "port": getattr(self, "default_port", 0), "runtime": s.text("container.runtime"),
            "image": self.ctx.images.get(self.name, ""),
        }
        for opt in self.extra_options:
            values[opt.dest] = opt.default
        for layer in (recipe or {}, options):
            values.update({k: v for k, v in layer.items() if v is not None})
        if values["runtime"] == "auto":
            values["runtime"] = "none" if s.text("executor") == "local" else "apptainer"
        if values.get("no_multithread") and not (options.get("cpus") or (recipe or {}).get("cpus")):
            values["cpus"] = max(1, int(values["cpus"]) // 2)  # the node's cores, without their second threads
        self.ctx.site.apply(values)  # the account to charge, a scratch that exists, a time the QOS allows
        if "monitor_targets" not in values:
            values["monitor_targets"] = monitor_targets(self)
        return values

    def scrapable(self, values: Mapping[str, Any]) -> bool:
        """Whether a monitor's Prometheus can read this job's metrics (no key of the job's own in the way)."""
        return bool(self.metrics_path)

    def job_values(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
        s = self.ctx.settings
        image = str(values["image"])
        return {
            "service": self.name, "name": f"benchctl-{self.name}",
            "account": values["account"], "partition": values["partition"], "qos": values["qos"],
            "reservation": values.get("reservation") or "",
            "time": values["time"], "nodes": int(values["nodes"]), "cpus": int(values["cpus"]),
            # Servers run one task per node; MPI jobs (IO500) ask for more with a tasks_per_node option.
            "ntasks_per_node": int(values.get("tasks_per_node") or 1),
            "mem": values["mem"], "gpus": int(values["gpus"]),
            "output": str(run_dir / "slurm-%j.out"), "error": str(run_dir / "slurm-%j.err"),
            "modules": list(s.get("container.modules")), "runtime": values["runtime"],
            "binds": [s.expand_text(b) for b in s.get("container.binds")],
            "path_prepend": self.ctx.host_bin_dir if values["runtime"] == "none" else "",
            "image": image, "sif": sif_path(s, image, self.name),
            "apptainer_dir": str(Path(s.expand("paths.scratch")) / "benchctl" / "apptainer"),
            "hint": "nomultithread" if values.get("no_multithread") else "",
            "port": int(values["port"]), "ready_timeout": self.ready_timeout,
            "health_path": getattr(self, "health_path", "/"),
            "monitor_targets": str(values.get("monitor_targets") or "") if self.scrapable(values) else "",
            "metrics_path": self.metrics_path,
            "target_json": target_json(self, values) if self.metrics_path else "",
            **exporter_values(self, values),
            "auth": self.auth_on(values),  # the job finds its key in $BENCHCTL_API_KEY (never in the script)
            # Under Slurm the login node and other nodes must reach the server; run here by the local executor,
            # only this machine uses it: nobody else gets a port to knock on.
            "bind": "127.0.0.1" if self.ctx.executor.name == "local" else "0.0.0.0",
        }

    def render(self, values: Mapping[str, Any], run_dir: Path) -> str:
        # The job's own account in its paths ({account} in scratch), even when --account names another project.
        account = values.get("account") or self.ctx.settings.text("slurm.account")
        with self.ctx.settings.overlay({"slurm.account": account}):
            context = {"job": self.job_values(values, run_dir), **self.template_values(values, run_dir)}
        return self.ctx.renderer.render(self.template, context, search=self.template_dir)

    def new_run_dir(self) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        # job_home: on the login node with the ssh executor (the job table stays on this machine).
        return self.ctx.settings.job_home / "jobs" / f"{self.name}-{stamp}-{secrets.token_hex(2)}"

    def submit(self, values: Mapping[str, Any]) -> Job:
        run_dir = self.new_run_dir()
        script = self.render(values, run_dir)
        self.files.mkdir(run_dir)
        account = values.get("account") or self.ctx.settings.text("slurm.account")
        with self.ctx.settings.overlay({"slurm.account": account}):  # the job's project in its paths
            self.prepare_run_dir(values, run_dir)
        script_path = run_dir / "job.sh"
        self.files.write_text(script_path, script, mode=0o700)
        env = self.make_credentials(values, run_dir)
        if self.ctx.jobs.read_only:  # refuse before anything runs that could not be recorded
            raise ServiceError(f"not submitted: the job table {self.ctx.jobs.path} was {self.ctx.jobs.read_only}")
        try:
            job_id = self.ctx.executor.submit(script_path, cwd=run_dir, env=env)
        except ExecutorError as exc:
            raise ExecutorError(f"{exc} (the script is kept at {script_path})") from None
        job = Job(id=job_id, service=self.name, executor=self.ctx.executor.name, script_path=str(script_path),
                  out_path=str(run_dir / f"slurm-{job_id}.out"), err_path=str(run_dir / f"slurm-{job_id}.err"),
                  run_dir=str(run_dir),
                  options={k: option_text(v) for k, v in values.items() if v is not None},
                  # Which cluster (the ssh executor's user@host): the table on a laptop may hold several.
                  extra={"remote": self.ctx.executor.remote} if self.ctx.executor.remote else {})
        try:
            self.ctx.jobs.add(job)
        except (OSError, TableReadOnly) as exc:
            # A job nobody can see or stop must not run: cancel it, then say why.
            why = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror else str(exc)
            try:
                self.ctx.executor.cancel(job_id)
                fate = "it was cancelled so that nothing runs untracked"
            except ExecutorError as cancel_error:
                fate = f"cancel it yourself (scancel {job_id}): {cancel_error}"
            raise ServiceError(f"job {job_id} was submitted but cannot be recorded ({why}); {fate}") from None
        try:  # a copy beside the job, from which a damaged table is recovered
            self.files.write_text(run_dir / "job.json", json.dumps(
                {"job_id": job_id, "service": self.name, "executor": self.ctx.executor.name,
                 "values": {k: str(v) for k, v in values.items()}}, indent=1))
        except OSError as exc:
            log.warning("job.json of %s not written: %s", job_id, exc)
        return job

    # ---- credentials ---------------------------------------------------------------------------
    def make_credentials(self, values: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
        """A random key for this job: kept in a 0600 file in its run folder (where `bench` and `check` find
        it) and handed to the job in its environment. Returns the variables for the job."""
        if not self.auth_on(values):
            return {}
        key = secrets.token_urlsafe(32)
        self.files.write_text(run_dir / CREDENTIALS, json.dumps({"scheme": self.auth, "key": key}), mode=0o600)
        return {KEY_VARIABLE: key}

    def credentials(self, job: Job) -> dict[str, str]:
        """The HTTP headers that admit benchctl to this job's service ({} when it needs none)."""
        if not self.auth or not job.run_dir:
            return {}
        try:
            data = json.loads(self.files.read_text(Path(job.run_dir) / CREDENTIALS))
            key, scheme = str(data["key"]), str(data.get("scheme", self.auth))
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {"Authorization": f"Bearer {key}"} if scheme == "bearer" else {"api-key": key}

    def auth_line(self, job: Job) -> str:
        """What `check` says about who can reach the service."""
        if not self.auth:
            return f"none — {self.no_auth_note}"
        if job.options.get("no_auth") == "True":
            return "off (--no-auth) — anyone on the cluster who finds the port can use it"
        if self.credentials(job):
            return f"API key of this job in {Path(job.run_dir) / CREDENTIALS} (0600); bench and check use it"
        return "the service's own (see its options)"

    # ---- track / ready -----------------------------------------------------------------------
    def refresh(self, job: Job) -> Job:
        return refresh_jobs(self.ctx.executor, self.ctx.jobs, [job]).get(job.id, job)

    def endpoint(self, job: Job) -> Endpoint | None:
        """Where the job's service answers (None: not known yet, or a batch run without one)."""
        return None

    def details(self, job: Job) -> list[tuple[str, str]]:
        """(label, value) lines for `check`: the job's notable options."""
        return [(name.replace("_", " "), job.options[name]) for name in self.shown_options if job.options.get(name)]

    @abstractmethod
    def is_ready(self, job: Job) -> bool:
        """One step of wait_ready on a refreshed job: True when ready; ServiceError when it never will be."""

    @property
    def ready_word(self) -> str:
        """What `check --wait` reports at the end: 'ready' (a server) or 'finished' (a batch run)."""
        return "ready"

    def not_ready_message(self, job: Job, timeout: float) -> str:
        return (f"{job.label} not ready after {timeout:.0f} s (state {job.state.value}"
                f"{', ' + job.reason if job.reason else ''}); it keeps running — 'logs {job.id}' shows its output")

    def wait_ready(self, job: Job, timeout: float, progress: Callable[[Job, float], None] | None = None) -> Job:
        """Poll job state (and the service) until ``is_ready``; ServiceError on failure or timeout."""
        start = time.monotonic()
        failures = 0
        while True:
            try:
                job = self.refresh(job)
                failures = 0
            except ExecutorError:
                # A busy controller times out now and then; only a persistent failure ends the wait.
                failures += 1
                if failures >= MAX_QUERY_FAILURES:
                    raise
            if self.is_ready(job):
                return self.ctx.jobs.update(job.id, ready=True) or job
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                raise ServiceError(self.not_ready_message(job, timeout))
            if progress:
                progress(job, elapsed)
            # Fast at first (services usually come up within seconds), then gentler on the scheduler.
            interval = min(max(0.5, elapsed / 10), self.max_poll_interval)
            time.sleep(min(interval, max(0.1, timeout - elapsed)))

    def failure_reason(self, job: Job) -> str:
        info = self.log_info(job)
        what = {JobState.TIMEOUT: "hit its time limit", JobState.CANCELLED: "was cancelled",
                JobState.OUT_OF_MEMORY: "ran out of memory", JobState.NODE_FAIL: "lost its node"}.get(
            job.state, f"ended {job.state.value}")
        text = f"{job.label} {what}"
        if job.exit_code not in (None, 0):
            text += f" (exit code {job.exit_code})"
        if info.time_limit_line:
            text += f": {info.time_limit_line}"
        elif info.cancel_reason and info.cancel_reason != "time limit":
            # Slurm's own words for why it killed the job: node failure, preemption, a signal, a requeue.
            text += f" ({info.cancel_reason})"
        if info.oom_line and job.state is not JobState.OUT_OF_MEMORY:
            # The older accounting plugin kills with SIGKILL and sacct says FAILED/CANCELLED: say what it was.
            text += f"; out of memory: {info.oom_line}"
        err = self.last_error_line(job)
        if err and job.state is JobState.FAILED:
            text += f"; last error: {err}"
        return text

    def last_error_line(self, job: Job) -> str:
        """The line that explains a failure: from the error file, else from the output file."""
        for path in (job.err_path, job.out_path):
            line = logparse.last_error(tail_lines(self.files, path, 200)) if path else ""
            if line:
                return line
        return ""

    def log_info(self, job: Job) -> logparse.LogInfo:
        return read_log_info(self.files, job.out_path, job.err_path)

    def model_revision(self, job: Job) -> str:
        """The revision of the model the job serves (an HF snapshot hash), for the run manifest; "" unknown."""
        return ""

    # ---- stop --------------------------------------------------------------------------------
    def stop(self, job: Job, grace: float, *, poll: float = 0.5) -> Job:
        """Graceful stop: TERM to the service (it flushes and exits), then cancel the job. A job the scheduler
        no longer knows is marked GONE (UnknownJob is not an error here: there is nothing left to stop)."""
        try:
            return self._stop(job, grace, poll)
        except UnknownJob:
            return self.ctx.jobs.update(job.id, state=JobState.GONE, ready=False, reason="unknown to the scheduler") \
                or job

    def _stop(self, job: Job, grace: float, poll: float) -> Job:
        job = self.refresh(job)
        if job.state.is_final:
            return job
        executor = self.ctx.executor
        if job.state is JobState.RUNNING:
            executor.signal(job.id, "TERM")
            if not (job.out_path and self.files.exists(job.out_path)):
                grace = min(grace, 2.0)  # no log to show the STOPPED marker: do not wait the whole grace for it
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if "STOPPED" in self.log_info(job).markers or self.refresh(job).state.is_final:
                    break
                time.sleep(poll)
        executor.cancel(job.id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = self.refresh(job)
            if job.state.is_final:
                break
            time.sleep(poll)
        return self.ctx.jobs.update(job.id, ready=False) or job
