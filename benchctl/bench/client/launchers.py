"""How the shell starts, watches and stops the client tasks: as local processes (``Here``) or as a Slurm
job of its own (``JobClient``, the ``bench-client`` service). Both leave the same files in their folder
(``task``'s records and results) and progress lines in their logs, which ``launch`` follows and merges."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from benchctl.bench.client.task import STOP_FILE
from benchctl.bench.kind import BenchError
from benchctl.executors.files import JobFiles, LocalFiles

if TYPE_CHECKING:
    from benchctl.app import App
    from benchctl.jobs import Job
    from benchctl.services.benchclient import BenchClient

STOP_GRACE = 15.0  # seconds the tasks get to write their records and results after TERM
MAX_QUERY_FAILURES = 30  # scheduler queries (2 s apart) that may fail in a row while the tasks run


class Launcher(Protocol):
    files: JobFiles  # where ``folder`` and ``logs`` are read
    folder: Path
    logs: list[Path]
    label: str

    def start(self, spec: Mapping[str, Any], env: Mapping[str, str]) -> None: ...

    def poll(self) -> str | None:
        """None while the tasks run; when they have ended, "" (all well) or what went wrong."""

    def waiting(self) -> str:
        """What the tasks wait for before they run ("" once running): a pending job's reason."""

    def request_stop(self) -> None:
        """Ask the tasks to end their point and record it (the stop file ``task`` watches)."""

    def stop(self) -> None:
        """Make sure the tasks are gone (after ``request_stop`` and a wait for them)."""


def task_argv(spec: Path, out: Path, index: int, count: int) -> list[str]:
    return [sys.executable, "-u", "-m", "benchctl.bench.client.task", "--spec", str(spec), "--out", str(out),
            "--task", str(index), "--of", str(count)]


class Here:
    """N processes of this machine (``--client here --client-tasks N``), started through the Runner."""

    def __init__(self, app: App, folder: Path, count: int) -> None:
        self.app, self.folder, self.count = app, folder, count
        self.files: JobFiles = LocalFiles()  # the run folder is on this machine, whatever the executor
        self.logs = [folder / f"task-{i}.log" for i in range(count)]
        self.label = f"{count} local client processes"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, spec: Mapping[str, Any], env: Mapping[str, str]) -> None:
        import os

        self.files.mkdir(self.folder)
        path = self.folder / "spec.json"
        self.files.write_text(path, json.dumps(spec, indent=1), mode=0o600)
        full = {**os.environ, **env}
        for i in range(self.count):
            self.procs.append(self.app.runner.start(task_argv(path, self.folder, i, self.count),
                                                    output=str(self.logs[i]), env=full))

    def poll(self) -> str | None:
        codes = [p.poll() for p in self.procs]
        if any(c is None for c in codes):
            return None
        bad = [f"task {i} exited {c}" for i, c in enumerate(codes) if c]
        return ", ".join(bad)

    def waiting(self) -> str:
        return ""

    def request_stop(self) -> None:
        self.files.write_text(self.folder / STOP_FILE, "")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
            time.sleep(0.1)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


class JobClient:
    """The client as a Slurm job (``--client job``): submitted, followed and cancelled through the executor
    like any job; its files are read through ``executor.files``."""

    def __init__(self, app: App, count: int, nodes: int, partition: str, time_limit: str) -> None:
        from benchctl.services.benchclient import BenchClient

        service = app.service("bench-client")
        assert isinstance(service, BenchClient)
        self.app, self.service = app, service
        self.count, self.nodes, self.partition, self.time_limit = count, nodes, partition, time_limit
        self.files = app.executor.files
        self.folder, self.label = Path(), "the client job"
        self.logs: list[Path] = []
        self.job: Job | None = None
        self._polled = 0.0
        self._failures = 0

    def start(self, spec: Mapping[str, Any], env: Mapping[str, str]) -> None:
        from benchctl.services.benchclient import OUT
        from benchctl.templates import TemplateError

        service: BenchClient = self.service
        service.spec, service.env = dict(spec), dict(env)
        options: dict[str, Any] = {"nodes": self.nodes, "client_tasks": self.count, "runtime": "none",
                                   "tasks_per_node": -(-self.count // self.nodes)}
        if self.partition:
            options["partition"] = self.partition
        if self.time_limit:
            options["time"] = self.time_limit
        try:
            self.job = job = service.submit(service.resolve(options))
        except TemplateError as exc:
            raise BenchError(f"bench: client job: {exc}") from None
        self.folder, self.logs = Path(job.run_dir) / OUT, [Path(job.out_path)]
        self.label = f"client job {job.id}"
        for notice in self.app.service_context().site.take_notices():
            self.app.ui.info(notice)
        self.app.ui.success(f"submitted the client as job {job.id}: {self.count} task(s) on {self.nodes} node(s) "
                            f"(run dir {job.run_dir})")

    def _refresh(self) -> Job:
        from benchctl.executors.base import ExecutorError

        assert self.job is not None
        if time.monotonic() - self._polled >= 2.0:  # the controller is shared: every 2 s is plenty
            self._polled = time.monotonic()
            try:
                self.job = self.service.refresh(self.job)
                self._failures = 0
            except ExecutorError:
                # A busy or restarting controller: the tasks run on regardless; only a lasting silence counts.
                self._failures += 1
                if self._failures >= MAX_QUERY_FAILURES:
                    raise
        return self.job

    def poll(self) -> str | None:
        job = self._refresh()
        if not job.state.is_final:
            return None
        from benchctl.slurm.states import JobState

        if job.state is JobState.COMPLETED and job.exit_code in (None, 0):
            return ""
        return self.service.failure_reason(job)

    def waiting(self) -> str:
        job = self._refresh()
        from benchctl.slurm.states import JobState

        if job.state is JobState.PENDING:
            waited = time.time() - job.submitted_at
            limit = float(self.app.settings.get("ui.wait_timeout"))
            if waited > limit:  # as `check --wait` gives up: the job is cancelled, nothing was measured
                self.stop()
                raise BenchError(f"bench: {self.label} still pending after {limit:.0f} s (ui.wait_timeout); "
                                 "cancelled")
            return f"{self.label} pending" + (f" ({job.reason})" if job.reason else "") + f", {waited:.0f} s"
        return ""

    def request_stop(self) -> None:
        if self.job is None:
            return
        if self._refresh().state.is_final:
            return
        from benchctl.slurm.states import JobState

        if self.job.state is JobState.PENDING:  # nothing measured yet: no need to wait for anything
            self.stop()
            return
        self.files.write_text(self.folder / STOP_FILE, "")

    def stop(self) -> None:
        """Cancel the job through the executor (scancel), as `stop` does: the tasks have recorded by now."""
        if self.job is not None and not self.job.state.is_final:
            self.job = self.service.stop(self.job, STOP_GRACE, poll=0.5)


__all__ = ["Here", "JobClient", "Launcher", "task_argv"]
