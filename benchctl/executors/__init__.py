"""Executors: where a rendered batch script runs -- ``slurm`` (on a login node), ``ssh`` (a login node reached
from a laptop) and ``local`` (no Slurm).

``EXECUTORS`` is the one table of them: the command line's ``--executor`` choices, the config check and the
``auto`` choice all come from it. A new executor is a class with ``create``/``available`` and the five
operations of ``Executor`` (its ``files`` reach the jobs' side), registered here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from benchctl.executors.base import Executor, ExecutorError
from benchctl.executors.local import LocalExecutor
from benchctl.executors.process import Runner
from benchctl.executors.slurm import SlurmExecutor
from benchctl.executors.ssh import SshExecutor
from benchctl.registry import Registry

if TYPE_CHECKING:
    from benchctl.config import Settings

EXECUTORS: Registry[type[Executor]] = Registry("executor", (SlurmExecutor, LocalExecutor, SshExecutor),
                                               key=lambda cls: cls.name)


def executor_choices() -> tuple[str, ...]:
    """What ``--executor`` and the ``executor`` setting accept."""
    return ("auto", *EXECUTORS.names())


def resolve_executor_name(name: str, runner: Runner) -> str:
    """``auto`` means the available executor of the highest priority (Slurm when ``sbatch`` is on PATH, else
    the local executor, the embedded default)."""
    if name == "auto":
        ranked = sorted(EXECUTORS, key=lambda cls: -cls.auto_priority)
        return next(cls.name for cls in ranked if cls.available(runner))
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r} (choose from {', '.join(executor_choices())})")
    return name


def make_executor(name: str, runner: Runner, state_dir: Path, settings: Settings | None = None) -> Executor:
    """Build the executor called ``name`` (already resolved, not ``auto``); ``ssh`` reads its login node from
    ``settings`` (``[remote]``)."""
    cls = EXECUTORS.get(name)
    if cls is None:
        raise ExecutorError(f"unknown executor {name!r}")
    if issubclass(cls, SshExecutor) and settings is not None:
        return cls.from_settings(settings, runner)
    return cls.create(runner, state_dir)


__all__ = ["EXECUTORS", "Executor", "ExecutorError", "executor_choices", "make_executor", "resolve_executor_name"]
