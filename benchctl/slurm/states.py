"""Map every Slurm job state onto the small set benchctl reasons about.

Slurm has ~25 states (squeue(1) "JOB STATE CODES"), sacct decorates some (``CANCELLED by 0``), and new
versions add more. benchctl only needs to know: waiting, running, finished well, finished badly, and
"may come back" (preempted/requeued jobs keep their id but get a new node). Unknown text maps to UNKNOWN
instead of raising, so a newer Slurm never crashes the shell.
"""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    """benchctl's job states (values are what users see)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    REQUEUED = "REQUEUED"
    SUSPENDED = "SUSPENDED"
    UNKNOWN = "UNKNOWN"
    GONE = "GONE"  # benchctl's own: the scheduler no longer knows the job (purged, or another cluster's)

    @property
    def is_final(self) -> bool:
        """True when the job will not run again (PREEMPTED/REQUEUED may come back, like ReFrame treats them)."""
        return self in FINAL_STATES

    @property
    def is_active(self) -> bool:
        return self in (JobState.PENDING, JobState.RUNNING, JobState.COMPLETING, JobState.SUSPENDED,
                        JobState.REQUEUED, JobState.PREEMPTED)

    @property
    def ok(self) -> bool:
        return self is JobState.COMPLETED


FINAL_STATES = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT, JobState.OUT_OF_MEMORY,
     JobState.NODE_FAIL, JobState.GONE}
)

# Long names as squeue %T / sacct State print them, and the compact codes of squeue %t.
_SLURM_TO_STATE: dict[str, JobState] = {
    "PENDING": JobState.PENDING, "PD": JobState.PENDING,
    "CONFIGURING": JobState.PENDING, "CF": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING, "RD": JobState.PENDING,
    "REQUEUE_FED": JobState.REQUEUED, "RF": JobState.REQUEUED,
    "REQUEUE_HOLD": JobState.REQUEUED, "RH": JobState.REQUEUED,
    "REQUEUED": JobState.REQUEUED, "RQ": JobState.REQUEUED,
    # 25.11: a job requeued ahead of the queue (--requeue=expedite) after a node failure; it comes back like
    # REQUEUED. The flag names below print only in long form (job_state_string), so no short codes.
    "EXPEDITING": JobState.REQUEUED,
    "LAUNCH_FAILED": JobState.FAILED, "RECONFIG_FAIL": JobState.FAILED,
    "POWER_UP_NODE": JobState.PENDING, "UPDATE_DB": JobState.PENDING,
    "SPECIAL_EXIT": JobState.REQUEUED, "SE": JobState.REQUEUED,
    "RUNNING": JobState.RUNNING, "R": JobState.RUNNING,
    "RESIZING": JobState.RUNNING, "RS": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING, "SI": JobState.RUNNING,
    "STAGE_OUT": JobState.COMPLETING, "SO": JobState.COMPLETING,
    "COMPLETING": JobState.COMPLETING, "CG": JobState.COMPLETING,
    "COMPLETED": JobState.COMPLETED, "CD": JobState.COMPLETED,
    "FAILED": JobState.FAILED, "F": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED, "BF": JobState.FAILED,
    "DEADLINE": JobState.FAILED, "DL": JobState.FAILED,
    "REVOKED": JobState.CANCELLED, "RV": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED, "CA": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT, "TO": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY, "OOM": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL, "NF": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED, "PR": JobState.PREEMPTED,
    "SUSPENDED": JobState.SUSPENDED, "S": JobState.SUSPENDED,
    "STOPPED": JobState.SUSPENDED, "ST": JobState.SUSPENDED,
}


_LONG_NAMES = sorted(name for name in _SLURM_TO_STATE if len(name) > 2)


def map_state(text: str) -> JobState:
    """Map squeue/sacct state text to a JobState.

    Tolerates decorations (``CANCELLED by 1234``), lower case, and the names sacct cuts at its default column
    width with a ``+`` (``OUT_OF_ME+``, ``CANCELLED+``, ``COMPLETI+``): a cut name maps to the one state whose
    name it begins (two candidates sharing the cut prefix map to UNKNOWN rather than to a guess).
    """
    word = text.strip().split(" ", 1)[0].upper()
    truncated = word.endswith("+")
    word = word.rstrip("+")
    state = _SLURM_TO_STATE.get(word)
    if state is not None:
        return state
    if truncated and word:
        matches = {_SLURM_TO_STATE[name] for name in _LONG_NAMES if name.startswith(word)}
        if len(matches) == 1:
            return matches.pop()
    return JobState.UNKNOWN
