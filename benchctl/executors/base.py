"""The executor interface: submit a batch script, report job states, signal and cancel jobs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from benchctl.slurm.parse import JobStatus


class ExecutorError(RuntimeError):
    """A scheduler action failed; the message is one line fit for the user."""


class Executor(ABC):
    """Runs batch scripts somewhere and tells what became of them."""

    name: str = ""

    @abstractmethod
    def submit(self, script: Path, *, cwd: Path) -> str:
        """Submit ``script``; return the job id. Raises ExecutorError with the scheduler's message."""

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
