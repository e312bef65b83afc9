"""Job records and the persisted job table.

The table is the single source the toolbar, the completer and ``status`` read; only the poller and the
commands write it. It is saved atomically (temp file + rename) so a killed shell never leaves a torn file,
and a restarted shell re-attaches to jobs that still run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from benchctl.slurm.states import JobState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One submitted job. Frozen: updates go through ``JobTable.update`` which swaps the record."""

    id: str
    service: str
    executor: str
    state: JobState = JobState.PENDING
    reason: str = ""
    nodes: str = ""
    host: str = ""
    ip: str = ""
    port: int | None = None
    ready: bool = False
    # Why a RUNNING job's service is not (or no longer) ready: "" | "stopped" (the service ended inside the job)
    # | "not answering" (it was ready, the last probe got no answer).
    health: str = ""
    exit_code: int | None = None
    submitted_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    script_path: str = ""
    out_path: str = ""
    err_path: str = ""
    run_dir: str = ""
    time_limit_hit: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.service}:{self.id}"

    @property
    def endpoint_host(self) -> str:
        """Address to reach the service at: the IP the job printed, else the node name."""
        return self.ip or self.host or (self.nodes.split(",")[0] if self.nodes else "")

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Job:
        known = {f.name for f in fields(cls)}
        clean = {k: v for k, v in data.items() if k in known}
        clean["state"] = JobState(str(clean.get("state", "UNKNOWN"))) if str(
            clean.get("state")) in JobState._value2member_map_ else JobState.UNKNOWN
        return cls(**clean)  # type: ignore[arg-type]


class JobTable:
    """Thread-safe, JSON-persisted map of job id → Job, in submission order.

    Several benchctl sessions of one user (two terminals on a login node) share the file: every save
    merges under an advisory lock (newest record of a job wins; jobs another session added are adopted),
    and ``sync()`` picks up other sessions' changes when the file changed.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._removed: set[str] = set()
        self._mtime = 0.0
        self.version = 0  # bumped on every change; the toolbar uses it to skip redundant redraws
        if path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            self._jobs = self._read()
        except (OSError, ValueError) as exc:
            # Keep the broken file for inspection rather than silently overwriting the user's job list.
            backup = self.path.with_suffix(".corrupt")
            log.warning("job table %s unreadable (%s); moved to %s", self.path, exc, backup)
            os.replace(self.path, backup)

    def _read(self) -> dict[str, Job]:
        """The jobs on disk ({} when there is no file). Raises OSError/ValueError on a broken file."""
        assert self.path is not None
        try:
            stat = self.path.stat()
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        self._mtime = stat.st_mtime
        jobs: dict[str, Job] = {}
        for item in data.get("jobs", []):
            try:
                job = Job.from_dict(item)
            except (TypeError, ValueError) as exc:
                log.warning("skipping bad job record %r: %s", item, exc)
                continue
            jobs[job.id] = job
        return jobs

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _merge(self, theirs: dict[str, Job]) -> bool:
        """Adopt records from disk that are new or newer than ours; True if anything changed."""
        changed = False
        for job_id, job in theirs.items():
            mine = self._jobs.get(job_id)
            if job_id not in self._removed and (mine is None or job.updated_at > mine.updated_at):
                self._jobs[job_id] = job
                changed = True
        if changed:
            self._jobs = dict(sorted(self._jobs.items(), key=lambda kv: kv[1].submitted_at))
            self.version += 1
        return changed

    def sync(self) -> bool:
        """Pick up changes other sessions saved (cheap when the file did not change)."""
        if self.path is None:
            return False
        try:
            if self.path.stat().st_mtime == self._mtime:
                return False
        except FileNotFoundError:
            return False
        with self._lock, self._file_lock():
            try:
                return self._merge(self._read())
            except (OSError, ValueError) as exc:
                log.warning("cannot read job table %s: %s", self.path, exc)
                return False

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock, self._file_lock():
            try:
                self._merge(self._read())
            except (OSError, ValueError) as exc:
                log.warning("job table %s unreadable (%s); rewriting it", self.path, exc)
            payload = {"version": 1, "jobs": [j.to_dict() for j in self._jobs.values()]}
            fd, tmp = tempfile.mkstemp(prefix=".jobs-", suffix=".json", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(payload, fh, indent=1)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
                self._mtime = self.path.stat().st_mtime
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            self.version += 1
        self.save()

    def update(self, job_id: str, **changes: object) -> Job | None:
        """Apply changes to a job; returns the new record (None if unknown). Saves only if something changed."""
        with self._lock:
            old = self._jobs.get(job_id)
            if old is None:
                return None
            new = replace(old, **changes)  # type: ignore[arg-type]
            if new == replace(old, updated_at=new.updated_at):
                return old
            new = replace(new, updated_at=time.time())
            self._jobs[job_id] = new
            self.version += 1
        self.save()
        return new

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._removed.add(job_id)
            if self._jobs.pop(job_id, None) is not None:
                self.version += 1
        self.save()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def active(self) -> list[Job]:
        return [j for j in self.all() if not j.state.is_final]

    def latest_for(self, service: str, *, active_only: bool = False) -> Job | None:
        """The most recently submitted job of a service (active ones first when asked)."""
        jobs = [j for j in self.all() if j.service == service]
        if active_only:
            jobs = [j for j in jobs if not j.state.is_final]
        return max(jobs, key=lambda j: j.submitted_at, default=None)
