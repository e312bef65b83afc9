"""Every read and write of a job's files goes through the executor's ``JobFiles``.

An executor whose files live only in memory (``MemoryFiles``, under a root that does not exist on disk):
``start`` writes the script there, ``logs`` and ``check`` read the job's log from there, and an IO500 run's
results are found and parsed from there. Had any code opened a job's path directly, it would have found
nothing on this machine and these tests would fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from benchctl.app import App
from benchctl.config import load_settings
from benchctl.executors.base import Executor
from benchctl.executors.files import LocalFiles, read_bounded, tail_lines
from benchctl.executors.process import Runner
from benchctl.jobs import Job
from benchctl.slurm.parse import JobStatus
from benchctl.slurm.states import JobState
from tests.conftest import string_ui
from tests.fakes import MemoryFiles

ROOT = "/nonexistent-benchctl-memory"
IO500_DATA = Path(__file__).resolve().parent / "data" / "io500"


class MemoryExecutor(Executor):
    """Jobs whose state the test sets and whose files are in memory."""

    name: ClassVar[str] = "memory"

    def __init__(self) -> None:
        self.files = MemoryFiles()
        self.states: dict[str, JobStatus] = {}
        self.submitted: list[str] = []

    @classmethod
    def create(cls, runner: Runner, state_dir: Path) -> MemoryExecutor:
        return cls()

    def submit(self, script: Path, *, cwd: Path, env: Mapping[str, str] | None = None) -> str:
        assert self.files.is_file(script), "the script must be written through JobFiles"
        job_id = str(700 + len(self.submitted))
        self.submitted.append(str(script))
        self.states[job_id] = JobStatus(job_id, JobState.PENDING, "PENDING")
        return job_id

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return {j: self.states[j] for j in job_ids if j in self.states}

    def signal(self, job_id: str, signal: str) -> None:
        pass

    def cancel(self, job_id: str) -> None:
        self.states[job_id] = JobStatus(job_id, JobState.CANCELLED, "CANCELLED")


@pytest.fixture
def memory_app() -> App:
    ui, buf = string_ui()
    app = App(settings=load_settings(executor="local", profile="local"), ui=ui, executor_obj=MemoryExecutor())
    app.out = buf  # type: ignore[attr-defined]
    return app


def out(app: App) -> str:
    return str(app.out.getvalue())  # type: ignore[attr-defined]


def memory(app: App) -> MemoryFiles:
    files = app.executor.files
    assert isinstance(files, MemoryFiles)
    return files


def add_job(app: App, job_id: str, service: str, run_dir: str, state: JobState) -> Job:
    job = Job(id=job_id, service=service, executor="memory", run_dir=run_dir, out_path=f"{run_dir}/slurm-{job_id}.out",
              err_path=f"{run_dir}/slurm-{job_id}.err")
    app.jobs.add(job)
    assert isinstance(app.executor, MemoryExecutor)
    app.executor.states[job_id] = JobStatus(job_id, state, state.value, "mel0153")
    return job


def test_start_writes_the_script_through_job_files(memory_app: App) -> None:
    assert memory_app.run_line("start chroma"), out(memory_app)
    [job] = memory_app.jobs.all()
    assert not Path(job.script_path).exists() and not Path(job.run_dir).exists()  # nothing on this disk
    files = memory(memory_app)
    assert files.read_text(job.script_path).startswith("#!/bin/bash -l\n")
    assert files.modes[job.script_path] == 0o700
    assert '"service": "chroma"' in files.read_text(f"{job.run_dir}/job.json")


def test_logs_and_check_read_the_log_through_job_files(memory_app: App) -> None:
    job = add_job(memory_app, "42", "chroma", f"{ROOT}/jobs/chroma-1", JobState.RUNNING)
    lines = ["BENCHCTL_JOBID=42", "BENCHCTL_HOST=mel0153", "BENCHCTL_NODE=mel0153", "BENCHCTL_IP=10.3.0.153",
             "BENCHCTL_PORT=27311", *(f"chroma log line {i}" for i in range(80))]
    memory(memory_app).put(job.out_path, "\n".join(lines) + "\n")
    memory(memory_app).put(job.err_path, "error: something went wrong\n")
    assert memory_app.run_line("logs 42 -n 3"), out(memory_app)
    assert "chroma log line 79" in out(memory_app) and "chroma log line 76" not in out(memory_app)
    assert memory_app.run_line("logs 42 --err")
    assert "error: something went wrong" in out(memory_app)
    assert memory_app.run_line("check 42")
    text = out(memory_app)
    assert "RUNNING on mel0153" in text and "127.0.0.1:27311" in text  # markers read from memory (local: loopback)
    assert memory_app.jobs.get("42").port == 27311  # type: ignore[union-attr]


def test_io500_results_are_found_and_parsed_through_job_files(memory_app: App) -> None:
    run_dir = f"{ROOT}/jobs/io500-1"
    job = add_job(memory_app, "43", "io500", run_dir, JobState.COMPLETED)
    files = memory(memory_app)
    result_dir = f"{run_dir}/results/2025.01.10-12.00.05"
    for name in ("result_summary.txt", "result.txt"):
        files.put(f"{result_dir}/{name}", (IO500_DATA / "valid-run" / name).read_bytes())
    files.put(job.out_path, "BENCHCTL_RESULT_DIR=results/2025.01.10-12.00.05\nBENCHCTL_DONE=0\n")
    service = memory_app.service("io500")
    assert str(service.result_dir(job)) == result_dir  # type: ignore[attr-defined]
    parsed = service.load(job)  # type: ignore[attr-defined]
    assert parsed is not None and parsed.valid and parsed.score is not None
    assert memory_app.run_line("bench io500 --job 43"), out(memory_app)
    text = out(memory_app)
    assert "IO500 job 43" in text and "ior-easy-write" in text and "results: " in text


def test_helpers_bound_their_reads_on_any_job_files() -> None:
    files = MemoryFiles()
    files.put("/m/big.log", "BENCHCTL_PORT=1\n" + "x" * 80 + "\n" * 20000 + "*** JOB 1 CANCELLED ***\n")
    lines = read_bounded(files, "/m/big.log")
    assert lines[0] == "BENCHCTL_PORT=1" and lines[-1] == "*** JOB 1 CANCELLED ***"
    assert tail_lines(files, "/m/big.log", 1) == ["*** JOB 1 CANCELLED ***"]
    assert read_bounded(files, "/m/missing") == [] and tail_lines(files, "/m/missing", 3) == []
    assert files.listdir("/m") == ["big.log"] and files.is_dir("/m")


def test_local_files_write_with_the_mode(tmp_path: Path) -> None:
    files = LocalFiles()
    target = tmp_path / "a" / "b.txt"
    files.write_text(target, "hello", mode=0o600)
    assert target.read_text() == "hello" and (target.stat().st_mode & 0o777) == 0o600
    assert files.read_bytes(target, 1, 3) == b"ell" and files.listdir(tmp_path / "a") == ["b.txt"]
