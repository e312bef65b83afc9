"""The one subprocess seam: every program benchctl runs (sbatch, squeue, sacct, scancel, ...) goes through a
``Runner``.

Unit tests replace the Runner with a fake that answers like Slurm; everything above it stays real.
Commands are always argument lists -- never a shell string built from user values.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Variables an enclosing allocation (salloc, an interactive job) sets; sbatch would read SBATCH_* as
# options and the job would inherit the outer job's SLURM_* identity (ReFrame strips them too).
_ALLOCATION_PREFIXES = ("SBATCH_", "SLURM_", "SALLOC_", "SRUN_")


@dataclass(frozen=True)
class Completed:
    """Result of one command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error_text(self) -> str:
        """The most useful single line to show a user when the command failed."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return text[-1] if text else f"exit status {self.returncode}"


class CommandNotFound(RuntimeError):
    """The program is not installed or not on PATH (e.g. Slurm on a laptop)."""


class Runner:
    """Runs programs; the real one uses subprocess.run with a timeout."""

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, env: Mapping[str, str] | None = None,
            cwd: str | None = None, input_text: str | None = None) -> Completed:
        argv = tuple(str(a) for a in argv)
        if shutil.which(argv[0]) is None and not os.path.isabs(argv[0]):
            raise CommandNotFound(f"{argv[0]}: command not found")
        log.debug("run %s", argv)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=dict(env) if env else None,
                                  cwd=cwd, input=input_text, check=False)
        except FileNotFoundError as exc:
            raise CommandNotFound(f"{argv[0]}: {exc.strerror}") from None
        except subprocess.TimeoutExpired:
            return Completed(argv, 124, "", f"{argv[0]} timed out after {timeout:.0f} s")
        return Completed(argv, proc.returncode, proc.stdout, proc.stderr)

    def which(self, program: str) -> bool:
        return shutil.which(program) is not None

    def start(self, argv: Sequence[str], *, output: str, env: Mapping[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen[bytes]:
        """Start a program in the background (stdin closed, stdout and stderr appended to ``output``); the
        caller polls and ends it. Local client tasks (``bench --client here --client-tasks N``) run this way."""
        argv = tuple(str(a) for a in argv)
        log.debug("start %s", argv)
        with open(output, "ab") as out:
            try:
                return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        env=dict(env) if env else None, cwd=cwd)
            except FileNotFoundError as exc:
                raise CommandNotFound(f"{argv[0]}: {exc.strerror}") from None


def submission_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for sbatch: the caller's, minus any enclosing allocation's SBATCH_*/SLURM_* settings."""
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.startswith(_ALLOCATION_PREFIXES):
            del env[key]
    return env
