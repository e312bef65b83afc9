"""The ``slurm`` executor: sbatch/squeue/sacct/scancel on this host (the login-node case)."""

from __future__ import annotations

import getpass
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchctl.executors.base import Executor, ExecutorError, UnknownJob
from benchctl.executors.process import CommandNotFound, Completed, Runner, submission_env
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

# What Slurm's clients print when slurmctld does not answer (after retrying for MessageTimeout seconds).
_CONTROLLER_DOWN = ("Unable to contact slurm controller", "Socket timed out on send/recv",
                    "Zero Bytes were transmitted")
# After the controller was seen down, `scontrol ping` (answered at once, even then) is asked first for this
# long, so a shell does not wait out squeue's ~18 s of retries on every command.
DOWN_MEMORY = 120.0


def parse_accounts(text: str) -> tuple[str, list[str]]:
    """(default, accounts) from ``sacctmgr -n -P show user U withassoc format=defaultaccount,account`` lines."""
    default, accounts = "", []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 2:
            continue
        default = default or parts[0]
        if parts[1] and parts[1] not in accounts:
            accounts.append(parts[1])
    return default, accounts


class SlurmExecutor(Executor):
    """Talks to Slurm through the Runner seam; one squeue call per poll, sacct only for what squeue lacks."""

    name = "slurm"
    summary = "sbatch/squeue/sacct/scancel on this host (a login node)"
    auto_priority = 10

    def __init__(self, runner: Runner, *, timeout: float = 30.0) -> None:
        self.runner = runner
        self.timeout = timeout
        self._down_since = 0.0  # when the controller was last seen not answering (0: not recently)

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

    def accounts(self) -> tuple[str, list[str]]:
        """From slurmdbd: ``sacctmgr -n -P show user $USER withassoc format=defaultaccount,account`` prints one
        ``default|account`` line per association (the default repeated on each)."""
        user = os.environ.get("USER") or getpass.getuser()
        try:
            done = self._run(["sacctmgr", "-n", "-P", "show", "user", user, "withassoc",
                              "format=defaultaccount,account"])
        except ExecutorError:
            return "", []
        if done.returncode != 0:
            return "", []
        return parse_accounts(done.stdout)

    def qos_limits(self) -> dict[str, str]:
        """``sacctmgr -n -P show qos format=name,maxwall``: ``default|2-00:00:00`` lines."""
        try:
            done = self._run(["sacctmgr", "-n", "-P", "show", "qos", "format=name,maxwall"])
        except ExecutorError:
            return {}
        if done.returncode != 0:
            return {}
        return {name: wall for line in done.stdout.splitlines() if line.count("|") == 1
                for name, wall in [line.strip().split("|")] if name}

    def _controller_error(self, program: str, text: str) -> ExecutorError | None:
        """An ExecutorError when ``text`` says the controller did not answer (and remember it)."""
        if not any(marker in text for marker in _CONTROLLER_DOWN):
            return None
        self._down_since = time.monotonic()
        return ExecutorError(f"cannot query Slurm: the controller (slurmctld) does not answer ({program}: "
                             f"{text.strip().splitlines()[-1]})")

    def _check_controller(self) -> None:
        """Fail at once while the controller is known to be down (``scontrol ping`` says so)."""
        if not self._down_since or time.monotonic() - self._down_since > DOWN_MEMORY:
            return
        res = self._run(["scontrol", "ping"])
        if res.ok:
            self._down_since = 0.0
        elif "DOWN" in res.stdout:
            self._down_since = time.monotonic()
            raise ExecutorError("cannot query Slurm: the controller (slurmctld) does not answer (scontrol ping: "
                                "DOWN)")

    def submit(self, script: Path, *, cwd: Path, env: Mapping[str, str] | None = None) -> str:
        self._check_controller()
        # sbatch passes its environment to the job (--export=ALL, Slurm's default): the job's secrets too.
        res = self._run(["sbatch", "--export=ALL", "--parsable", str(script)], env={**submission_env(), **(env or {})},
                        cwd=str(cwd))
        return self._submitted_id(res)

    def _submitted_id(self, res: Completed) -> str:
        """The job id sbatch printed, or its failure as one ExecutorError (the controller down said so)."""
        if not res.ok:
            down = self._controller_error("sbatch", res.error_text())
            raise down or ExecutorError(f"sbatch failed: {res.error_text()}")
        try:
            job_id, _cluster = parse_sbatch(res.stdout)
        except ParseError as exc:
            raise ExecutorError(str(exc)) from None
        return job_id

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        self._check_controller()
        ids = ",".join(job_ids)
        # -t all: finished jobs stay visible (with their final state) for MinJobAge seconds.
        res = self._run(["squeue", "-h", "-t", "all", "-j", ids, "-o", SQUEUE_FORMAT])
        found: dict[str, JobStatus] = parse_squeue(res.stdout) if res.ok else {}
        if not res.ok:
            down = self._controller_error("squeue", res.stderr or res.stdout)
            if down is not None:  # sacct would answer from the database: possibly stale, never say it is current
                raise down
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
                    seen = found.get(job_id)
                    # The database lags the controller: a final (or COMPLETING) state squeue showed is never
                    # replaced by a stale non-final row of sacct; a final row brings the exit code.
                    if job_id in need and (status.state.is_final or seen is None or
                                           not (seen.state.is_final or seen.state is JobState.COMPLETING)):
                        found[job_id] = status
            elif not res.ok:
                raise ExecutorError(f"cannot query Slurm: {res.error_text()}; sacct: {acct.error_text()}")
        return found

    def signal(self, job_id: str, signal: str) -> None:
        # --full: the batch shell and its children too (by default scancel spares the batch step).
        self._scancel(job_id, "--full", f"--signal={signal}")

    def cancel(self, job_id: str) -> None:
        self._scancel(job_id)

    def _scancel(self, job_id: str, *options: str) -> None:
        self._check_controller()
        res = self._run(["scancel", *options, job_id])
        if res.ok:
            return
        text = res.error_text()
        if "Invalid job id specified" in text:
            raise UnknownJob(f"Slurm does not know job {job_id} (any more)")
        down = self._controller_error("scancel", text)
        raise down or ExecutorError(f"scancel {' '.join((*options, job_id))} failed: {text}")
