"""The ``slurm`` executor: sbatch/squeue/sacct/scancel on this host (the login-node case)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from benchctl.executors.base import Executor, ExecutorError
from benchctl.executors.process import CommandNotFound, Runner, submission_env
from benchctl.slurm.parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    JobStatus,
    ParseError,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
)
from benchctl.slurm.states import JobState

log = logging.getLogger(__name__)


class SlurmExecutor(Executor):
    """Talks to Slurm through the Runner seam; one squeue call per poll, sacct only for what squeue lacks."""

    name = "slurm"
    summary = "sbatch/squeue/sacct/scancel on this host (a login node)"
    auto_priority = 10

    def __init__(self, runner: Runner, *, timeout: float = 30.0) -> None:
        self.runner = runner
        self.timeout = timeout

    @classmethod
    def create(cls, runner: Runner, state_dir: Path) -> SlurmExecutor:
        return cls(runner)

    @classmethod
    def available(cls, runner: Runner) -> bool:
        return runner.which("sbatch")

    def _run(self, argv: list[str], **kw: object):  # type: ignore[no-untyped-def]
        try:
            return self.runner.run(argv, timeout=self.timeout, **kw)  # type: ignore[arg-type]
        except CommandNotFound as exc:
            raise ExecutorError(f"Slurm is not reachable: {exc} (use --executor local to run without Slurm)") from None

    def submit(self, script: Path, *, cwd: Path) -> str:
        res = self._run(["sbatch", "--parsable", str(script)], env=submission_env(), cwd=str(cwd))
        if not res.ok:
            raise ExecutorError(f"sbatch failed: {res.error_text()}")
        try:
            job_id, _cluster = parse_sbatch(res.stdout)
        except ParseError as exc:
            raise ExecutorError(str(exc)) from None
        return job_id

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        ids = ",".join(job_ids)
        # -t all: finished jobs stay visible (with their final state) for MinJobAge seconds.
        res = self._run(["squeue", "-h", "-t", "all", "-j", ids, "-o", SQUEUE_FORMAT])
        found: dict[str, JobStatus] = parse_squeue(res.stdout) if res.ok else {}
        if not res.ok:
            # One aged-out id makes squeue fail for the whole list ("Invalid job id specified").
            log.debug("squeue failed (%s); asking sacct", res.error_text())
        # sacct for ids squeue does not show, for finished jobs (their exit code is only in sacct), and for
        # COMPLETING ones: sacct already knows how they ended (TIMEOUT, CANCELLED, FAILED).
        need = [j for j in job_ids
                if j not in found or found[j].state.is_final or found[j].state is JobState.COMPLETING]
        if need:
            acct = self._run(["sacct", "-X", "-n", "-P", "-j", ",".join(need), "-o", SACCT_FIELDS])
            if acct.ok:
                for job_id, status in parse_sacct(acct.stdout).items():
                    completing = job_id in found and found[job_id].state is JobState.COMPLETING
                    if job_id in need and (status.state.is_final or not completing):
                        found[job_id] = status
            elif not res.ok:
                raise ExecutorError(f"cannot query Slurm: {res.error_text()}; sacct: {acct.error_text()}")
        return found

    def signal(self, job_id: str, signal: str) -> None:
        # --full: the batch shell and its children too (by default scancel spares the batch step).
        res = self._run(["scancel", "--full", f"--signal={signal}", job_id])
        if not res.ok:
            raise ExecutorError(f"scancel --signal={signal} {job_id} failed: {res.error_text()}")

    def cancel(self, job_id: str) -> None:
        res = self._run(["scancel", job_id])
        if not res.ok:
            raise ExecutorError(f"scancel {job_id} failed: {res.error_text()}")
