"""The executor interface: submit a batch script, report job states, signal and cancel jobs, and reach the
jobs' files (``files``: a ``JobFiles``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from benchctl.errors import UserError
from benchctl.executors.files import JobFiles, LocalFiles
from benchctl.executors.process import Runner
from benchctl.slurm.parse import JobStatus

if TYPE_CHECKING:
    from benchctl.jobs import Job


class ExecutorError(UserError, RuntimeError):
    """A scheduler action failed; the message is one line fit for the user."""


class UnknownJob(ExecutorError):
    """The scheduler does not know this job id (purged, or never its own): the record is gone."""


class Executor(ABC):
    """Runs batch scripts somewhere and tells what became of them.

    Subclasses register in ``benchctl.executors.EXECUTORS``; ``auto_priority`` and ``available`` decide what
    ``executor = "auto"`` picks (the highest priority that is available).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    auto_priority: ClassVar[int] = 0
    files: JobFiles = LocalFiles()

    @classmethod
    @abstractmethod
    def create(cls, runner: Runner, state_dir: Path) -> Executor:
        """Build the executor for one session (``state_dir``: benchctl's state folder)."""

    @classmethod
    def available(cls, runner: Runner) -> bool:
        """Whether this executor can work here (``auto`` takes the best available one)."""
        return True

    @abstractmethod
    def submit(self, script: Path, *, cwd: Path, env: Mapping[str, str] | None = None) -> str:
        """Submit ``script`` (a path in ``files``); return the job id. ``env``: variables the job gets on top
        of the submitting environment (secrets travel this way, never in the script). Raises ExecutorError
        with the scheduler's message."""

    @abstractmethod
    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """States of the given jobs in as few scheduler calls as possible.

        Ids the scheduler no longer knows are left out. Raises ExecutorError when the scheduler cannot be
        asked at all (the poller backs off and retries).
        """

    @abstractmethod
    def signal(self, job_id: str, signal: str) -> None:
        """Send ``signal`` (e.g. ``TERM``) to the job's processes, for a graceful stop."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel the job (pending or running)."""

    @property
    def remote(self) -> str:
        """The login node the jobs go to (``user@host[:port]``; "" when they run from here): labels the jobs."""
        return ""

    def owns(self, job: Job) -> bool:
        """Whether ``job`` is this executor's to query and manage: started by this kind of executor and, over
        ssh, on this login node (a laptop's table may hold jobs of two clusters: asking one cluster about the
        other's job ids would mark them gone, or worse, report a stranger's job)."""
        if job.executor != self.name:
            return False
        return not self.remote or str(job.extra.get("remote") or self.remote) == self.remote

    def reach(self, host: str, port: int) -> tuple[str, int]:
        """Where this machine connects to reach ``host:port`` as the jobs' side sees it (the ``ssh`` executor
        forwards it to a local port; the others reach it directly)."""
        return host, port

    def close(self) -> None:
        """Release what the executor holds (connections, forwards) when the session ends."""
        return None

    def accounts(self) -> tuple[str, list[str]]:
        """(the user's default account, all accounts they may charge) as the scheduler knows them; ("", [])
        where there are none (the local executor) or the scheduler cannot tell."""
        return "", []

    def qos_limits(self) -> dict[str, str]:
        """QOS name -> its maximum wall time as the scheduler states it ("" = none); {} when unknown."""
        return {}
