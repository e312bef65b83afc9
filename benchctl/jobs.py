"""Job records and the persisted job table.

The table is the single source the toolbar, the completer and ``status`` read; only the poller and the
commands write it. It is saved atomically (temp file + rename) so a killed shell never leaves a torn file,
and a restarted shell re-attaches to jobs that still run.

Damage is never silent and never loses what it can keep: records are validated one by one (bad ones are
set aside in ``jobs.rejected.jsonl`` with a message), an unreadable file is moved to a new, never
overwritten ``jobs.json.corrupt-<time>`` and the jobs are recovered from their run folders' ``job.json``,
fields and states this version does not know are kept when the table is rewritten, and a table written by a
newer benchctl is only read (changes are not saved) so it is never downgraded.
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
from datetime import datetime
from pathlib import Path
from typing import Any

from benchctl.executors.files import private_mkdir
from benchctl.slurm.states import JobState

log = logging.getLogger(__name__)

TABLE_VERSION = 1
RECOVER_DAYS = 7  # run folders younger than this are re-attached when the table was damaged


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
    # What a newer benchctl wrote that this one does not know (kept when the table is rewritten).
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return f"{self.service}:{self.id}"

    @property
    def endpoint_host(self) -> str:
        """Address to reach the service at: the IP the job printed, else the node name."""
        return self.ip or self.host or (self.nodes.split(",")[0] if self.nodes else "")

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        extra = data.pop("extra")
        data["state"] = self.state.value
        if self.state is JobState.UNKNOWN and "state" in extra:
            data["state"] = extra["state"]  # a newer version's state, kept as it was written
        return {**{k: v for k, v in extra.items() if k != "state"}, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """A record from the table; ValueError naming the field when it cannot be one."""
        if not isinstance(data, dict):
            raise ValueError(f"not a record but {type(data).__name__}")
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        clean: dict[str, Any] = {}
        extra = {k: v for k, v in data.items() if k not in known}
        for name in ("id", "service", "executor"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} missing or not text: {value!r}")
            clean[name] = value
        state = data.get("state", "UNKNOWN")
        if not isinstance(state, str):
            raise ValueError(f"state is not text: {state!r}")
        if state in JobState._value2member_map_:
            clean["state"] = JobState(state)
        else:
            clean["state"], extra["state"] = JobState.UNKNOWN, state
        for name in ("reason", "nodes", "host", "ip", "health", "script_path", "out_path", "err_path", "run_dir"):
            value = data.get(name, "")
            if not isinstance(value, str):
                raise ValueError(f"{name} is not text: {value!r}")
            clean[name] = value
        for name in ("submitted_at", "updated_at"):
            value = data.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} is not a number: {value!r}")
            clean[name] = float(value)
        for name in ("port", "exit_code"):
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} is not a whole number: {value!r}")
            clean[name] = value
        for name in ("ready", "time_limit_hit"):
            value = data.get(name, False)
            if not isinstance(value, bool):
                raise ValueError(f"{name} is not true/false: {value!r}")
            clean[name] = value
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise ValueError(f"options is not a mapping: {options!r}")
        clean["options"] = {str(k): str(v) for k, v in options.items()}
        return cls(**clean, extra=extra)


class TableReadOnly(RuntimeError):
    """The job table was written by a newer benchctl: this one reads it but must not rewrite it."""


class JobTable:
    """Thread-safe, JSON-persisted map of job id → Job, in submission order.

    Several benchctl sessions of one user (two terminals on a login node) share the file: every save
    merges under an advisory lock (newest record of a job wins; jobs another session added are adopted),
    and ``sync()`` picks up other sessions' changes when the file changed.
    """

    def __init__(self, path: Path | None, *, runs: Path | None = None) -> None:
        self.path = path
        self.runs = runs  # run folders (home/jobs): where a damaged table is recovered from
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._removed: set[str] = set()
        self._mtime = 0.0
        self.version = 0  # bumped on every change; the toolbar uses it to skip redundant redraws
        self.read_only = ""  # why the table is not saved ("" = it is)
        self._notices: list[str] = []
        self._extra_top: dict[str, Any] = {}
        if path is not None:
            self._load()

    # ---- messages for the user ------------------------------------------------------------------------
    def notice(self, message: str) -> None:
        log.warning("%s", message)
        with self._lock:
            self._notices.append(message)

    def take_notices(self) -> list[str]:
        """Messages about the table's state the shell shows once (damage, set-aside records, read-only)."""
        with self._lock:
            notices, self._notices = self._notices, []
        return notices

    # ---- reading ---------------------------------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None
        try:
            self._jobs = self._read()
        except (OSError, ValueError) as exc:
            backup = self._set_aside_file(str(exc))
            recovered = self._recover()
            self._jobs = {j.id: j for j in recovered}
            self.notice(f"the job table {self.path} was unreadable ({exc}); kept as {backup}"
                        + (f"; {len(recovered)} job(s) re-attached from their run folders" if recovered else ""))
            if recovered:
                self._write_locked_best_effort()

    def _set_aside_file(self, why: str) -> Path:
        """Move the damaged table to a new name that never replaces an earlier backup."""
        assert self.path is not None
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            backup = self.path.with_name(f"{self.path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
            if not backup.exists():
                break
        try:
            os.replace(self.path, backup)
        except OSError as exc:
            log.warning("cannot move %s aside (%s): %s", self.path, exc, why)
        return backup

    def _read(self) -> dict[str, Job]:
        """The jobs on disk ({} when there is no file). Raises OSError/ValueError when the file as a whole
        is unusable; bad single records are set aside with a notice."""
        assert self.path is not None
        try:
            stat = self.path.stat()
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        self._mtime = stat.st_mtime
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if not isinstance(data, dict):
            raise ValueError(f"expected an object with 'jobs', got {type(data).__name__}")
        records = data.get("jobs", [])
        if not isinstance(records, list):
            raise ValueError(f"'jobs' is not a list but {type(records).__name__}")
        version = data.get("version", 1)
        if (not isinstance(version, int) or version > TABLE_VERSION) and not self.read_only:
            self.read_only = f"written by a newer benchctl (table version {version!r})"
            self.notice(f"the job table {self.path} was {self.read_only}: this benchctl reads it but does "
                        "not save changes (upgrade benchctl, or use another BENCHCTL_HOME)")
        self._extra_top = {k: v for k, v in data.items() if k not in ("version", "jobs")}
        jobs: dict[str, Job] = {}
        rejected = []
        for item in records:
            try:
                job = Job.from_dict(item)
            except (TypeError, ValueError) as exc:
                rejected.append((item, str(exc)))
                continue
            jobs[job.id] = job
        if rejected:
            self._reject(rejected)
        return jobs

    def _reject(self, rejected: list[tuple[Any, str]]) -> None:
        assert self.path is not None
        side = self.path.with_name("jobs.rejected.jsonl")
        try:
            with side.open("a") as fh:
                for item, why in rejected:
                    fh.write(json.dumps({"record": item, "why": why, "at": time.time()}, default=str) + "\n")
            os.chmod(side, 0o600)
            where = f" (kept in {side})"
        except OSError as exc:
            where = f" (not kept: {exc.strerror})"
        first = rejected[0][1]
        self.notice(f"{len(rejected)} unusable record(s) in the job table set aside{where}: {first}")

    def _recover(self) -> list[Job]:
        """Jobs rebuilt from the run folders' job.json (recent ones): states are found by the next refresh."""
        if self.runs is None or not self.runs.is_dir():
            return []
        found = []
        horizon = time.time() - RECOVER_DAYS * 86400
        for info in sorted(self.runs.glob("*/job.json")):
            try:
                if info.stat().st_mtime < horizon:
                    continue
                data = json.loads(info.read_text())
                job_id, service = str(data["job_id"]), str(data["service"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            executor = str(data.get("executor") or ("local" if job_id.startswith("local-") else "slurm"))
            run_dir = info.parent
            found.append(Job(id=job_id, service=service, executor=executor, state=JobState.UNKNOWN,
                             submitted_at=info.stat().st_mtime, script_path=str(run_dir / "job.sh"),
                             out_path=str(run_dir / f"slurm-{job_id}.out"),
                             err_path=str(run_dir / f"slurm-{job_id}.err"), run_dir=str(run_dir),
                             options={str(k): str(v) for k, v in (data.get("values") or {}).items()}))
        return found

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        assert self.path is not None
        private_mkdir(self.path.parent)
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

    # ---- writing ---------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the table (merged with what other sessions saved). OSError (a full disk) reaches the caller;
        TableReadOnly when a newer benchctl owns the file."""
        if self.path is None:
            return
        if self.read_only:
            raise TableReadOnly(f"the job table {self.path} was {self.read_only}; not saved")
        with self._lock, self._file_lock():
            try:
                self._merge(self._read())
            except (OSError, ValueError) as exc:
                # Damaged since we read it (another process): keep that file aside, then write ours.
                backup = self._set_aside_file(str(exc))
                self.notice(f"the job table {self.path} was damaged ({exc}); kept as {backup}, rewritten")
            self._write()

    def _write(self) -> None:
        assert self.path is not None
        payload = {**self._extra_top, "version": TABLE_VERSION, "jobs": [j.to_dict() for j in self._jobs.values()]}
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

    def _write_locked_best_effort(self) -> None:
        try:
            with self._lock, self._file_lock():
                self._write()
        except OSError as exc:
            log.warning("cannot write the recovered job table: %s", exc)

    def add(self, job: Job) -> None:
        """Record a new job and save: OSError / TableReadOnly when it cannot be saved (the caller must not
        leave that job running untracked)."""
        with self._lock:
            self._jobs[job.id] = job
            self.version += 1
        self.save()

    def update(self, job_id: str, **changes: object) -> Job | None:
        """Apply changes to a job; returns the new record (None if unknown). Saves only if something changed;
        a save that fails (full disk, read-only table) keeps the change in memory and logs why."""
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
        self._save_quietly()
        return new

    def _save_quietly(self) -> None:
        try:
            self.save()
        except TableReadOnly:
            pass
        except OSError as exc:
            log.warning("job table not saved: %s", exc)

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
