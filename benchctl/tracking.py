"""Fold scheduler answers and job logs into the job table (used by commands and the poller alike)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from benchctl.executors.base import Executor
from benchctl.executors.files import JobFiles, PathLike, read_bounded
from benchctl.jobs import Job, JobTable
from benchctl.slurm import logparse
from benchctl.slurm.states import JobState

log = logging.getLogger(__name__)


def read_log_info(files: JobFiles, *paths: PathLike | None) -> logparse.LogInfo:
    """Markers and kill lines of a job's stdout and stderr files, read through the executor's ``JobFiles``
    (missing files are fine: the job may not have started)."""
    info = logparse.LogInfo()
    for path in paths:
        if path:
            logparse.parse_lines(read_bounded(files, path), info)
    return info


def refresh_jobs(executor: Executor, table: JobTable, jobs: Iterable[Job]) -> dict[str, Job]:
    """One scheduler query for ``jobs``, then their logs; returns the updated records.

    Jobs the scheduler no longer knows keep their last state (sacct may lag; a purged id is not a failure).
    Raises ExecutorError when the scheduler cannot be asked at all.
    """
    jobs = [j for j in jobs if executor.owns(j)]
    if not jobs:
        return {}
    statuses = executor.query([j.id for j in jobs])
    updated: dict[str, Job] = {}
    for job in jobs:
        changes: dict[str, object] = {}
        status = statuses.get(job.id)
        if status is not None and job.state.is_final and not status.state.is_final:
            status = None  # states only move forward: a stale answer never revives a job that ended
        if status is not None:
            changes.update(state=status.state, reason=status.reason, nodes=status.nodes or job.nodes)
            if status.exit_code is not None:
                changes["exit_code"] = status.exit_code
        state = changes.get("state", job.state)
        if state is not JobState.PENDING or job.host:
            info = read_log_info(executor.files, job.out_path, job.err_path)
            if info.host:
                changes["host"] = info.node
            if info.ip:
                changes["ip"] = info.ip
            if info.port:
                changes["port"] = info.port
            if info.hit_time_limit:
                changes["time_limit_hit"] = True
        if state in (JobState.PENDING, JobState.REQUEUED) and job.ready:
            changes["ready"] = False  # requeued: the service moves to a new node
        if isinstance(state, JobState) and state.is_final:
            changes["ready"] = False
        new = table.update(job.id, **changes) if changes else job
        updated[job.id] = new or job
    return updated
