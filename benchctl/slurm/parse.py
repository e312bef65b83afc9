"""Parsers for what sbatch, squeue and sacct print (text formats; ``--json`` differs between versions)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from benchctl.slurm.states import JobState, map_state

SQUEUE_FORMAT = "%i|%T|%N|%r"
SACCT_FIELDS = "JobID,State,ExitCode,Elapsed,NodeList%4096,Reason"

_PARSABLE_RE = re.compile(r"^(\d+(?:_\d+)?(?:\+\d+)?)(?:;(\S+))?$")
# sbatch.c: "Submitted batch job %u" and, on a federation or with -M/--clusters, "... on cluster %s".
_SUBMITTED_RE = re.compile(r"Submitted batch job (\d+)(?: on cluster (\S+))?")


class ParseError(ValueError):
    """Slurm printed something benchctl cannot read; the message quotes it."""


@dataclass(frozen=True)
class JobStatus:
    """One job's state as Slurm reported it."""

    job_id: str
    state: JobState
    raw_state: str
    nodes: str = ""
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    elapsed: str = ""


def parse_sbatch(stdout: str) -> tuple[str, str | None]:
    """Return ``(job_id, cluster)`` from ``sbatch --parsable`` output (``id[;cluster]``).

    Falls back to ``Submitted batch job N`` for wrappers that drop ``--parsable``; some sites append text
    to that line, so it is searched rather than matched whole.
    """
    for line in stdout.splitlines():
        m = _PARSABLE_RE.match(line.strip())
        if m:
            return m.group(1), m.group(2)
    m = _SUBMITTED_RE.search(stdout)
    if m:
        return m.group(1), m.group(2)
    raise ParseError(f"cannot find a job id in sbatch output: {stdout.strip()[:200]!r}")


def _clean_nodes(nodes: str) -> str:
    nodes = nodes.strip()
    return "" if nodes in ("None assigned", "(null)", "n/a") else nodes


def _clean_reason(reason: str) -> str:
    reason = reason.strip().strip("()")
    return "" if reason in ("None", "(null)") else reason


def parse_squeue(stdout: str) -> dict[str, JobStatus]:
    """Parse ``squeue -h -o '%i|%T|%N|%r'``. Array (``12_3``) and hetjob (``93+1``) ids are kept as printed."""
    out: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        parts += [""] * (4 - len(parts))
        job_id, raw, nodes, reason = parts[:4]
        out[job_id] = JobStatus(job_id, map_state(raw), raw, _clean_nodes(nodes), _clean_reason(reason))
    return out


def _exit_code(text: str) -> tuple[int | None, int | None]:
    m = re.match(r"^(\d+):(\d+)$", text.strip())
    if not m:
        return None, None
    return int(m.group(1)), int(m.group(2))


def parse_sacct(stdout: str) -> dict[str, JobStatus]:
    """Parse ``sacct -X -n -P -o JobID,State,ExitCode,Elapsed,NodeList%4096,Reason``.

    Step rows (``12.batch``) are skipped in case ``-X`` was not honoured. With duplicated ids (a wiped
    controller state) the last row wins, matching what sacct shows by default.
    """
    out: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0] or "." in parts[0]:
            continue
        parts += [""] * (6 - len(parts))
        job_id, raw, exit_text, elapsed, nodes, reason = parts[:6]
        code, sig = _exit_code(exit_text)
        out[job_id] = JobStatus(job_id, map_state(raw), raw.strip(), _clean_nodes(nodes), _clean_reason(reason),
                                code, sig, elapsed.strip())
    return out


def base_job_id(job_id: str) -> str:
    """``12_3`` → ``12``, ``93+1`` → ``93``: the id scancel/sacct accept for the whole job."""
    return re.split(r"[_+]", job_id, maxsplit=1)[0]
