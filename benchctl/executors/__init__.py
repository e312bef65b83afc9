"""Executors: where a rendered batch script runs. ``slurm`` (on a login node), ``local`` (no Slurm).

An ``ssh`` executor (laptop → login node) plugs in behind the same interface.
"""

from __future__ import annotations

from pathlib import Path

from benchctl.executors.base import Executor, ExecutorError
from benchctl.slurm.runner import Runner

EXECUTORS = ("auto", "slurm", "local")


def resolve_executor_name(name: str, runner: Runner) -> str:
    """``auto`` means Slurm when ``sbatch`` is on PATH, else the local executor (the embedded default)."""
    if name == "auto":
        return "slurm" if runner.which("sbatch") else "local"
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")
    return name


def make_executor(name: str, runner: Runner, state_dir: Path) -> Executor:
    """Build the executor called ``name`` (already resolved, not ``auto``)."""
    if name == "slurm":
        from benchctl.executors.slurm import SlurmExecutor

        return SlurmExecutor(runner)
    if name == "local":
        from benchctl.executors.local import LocalExecutor

        return LocalExecutor(state_dir / "local")
    raise ExecutorError(f"unknown executor {name!r}")


__all__ = ["EXECUTORS", "Executor", "ExecutorError", "make_executor", "resolve_executor_name"]
