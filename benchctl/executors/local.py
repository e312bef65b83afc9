"""The ``local`` executor: run a batch script as a detached process on this machine (no Slurm).

It reads the script's ``#SBATCH`` lines for ``--output``, ``--error``, ``--job-name`` and ``--time``,
sets the ``SLURM_*`` variables a job expects, and records everything under a state directory so another
benchctl process (or a restarted one) can tell what became of the job:

    <state>/<id>/pid       process group of the job (the wrapper is the session leader)
    <state>/<id>/rc        exit status, written by the wrapper when the script ends
    <state>/<id>/cancelled present when benchctl cancelled the job

States: RUNNING, COMPLETED, FAILED, TIMEOUT (``--time`` enforced with ``timeout``) and CANCELLED.
"""

from __future__ import annotations

import getpass
import itertools
import os
import re
import signal as signals
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchctl.executors.base import Executor, ExecutorError, UnknownJob
from benchctl.executors.files import private_mkdir
from benchctl.executors.process import Runner
from benchctl.slurm.parse import JobStatus
from benchctl.slurm.states import JobState

_SBATCH_RE = re.compile(r"^#SBATCH\s+--([a-z-]+)(?:[= ](.*))?$")
# The wrapper runs the script under `timeout` and records its exit status. Arguments are passed as argv,
# never pasted into the command text.
_WRAPPER = 'if [ "$1" -gt 0 ]; then timeout -s TERM -k 5 "$1" bash "$2"; else bash "$2"; fi; echo $? > "$3"'
_TIMEOUT_RC = 124


def parse_time_limit(text: str) -> int:
    """Slurm ``--time`` forms (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) → seconds; 0 = none."""
    text = text.strip()
    if not text or text.upper() in ("INFINITE", "UNLIMITED"):
        return 0
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in text.split(":")]
        h, m, s = [*parts, 0, 0][:3]
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            h, m, s = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, s = 0, parts[0], parts[1]
        else:
            h, m, s = parts[:3]
    return ((days * 24 + h) * 60 + m) * 60 + s


def sbatch_options(script_text: str) -> dict[str, str]:
    """``#SBATCH --key=value`` lines of a script (the header stops at the first command)."""
    opts: dict[str, str] = {}
    for line in script_text.splitlines()[1:]:
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not stripped.startswith("#SBATCH")):
            continue
        if not stripped.startswith("#SBATCH"):
            break
        m = _SBATCH_RE.match(stripped)
        if m:
            opts[m.group(1)] = (m.group(2) or "").strip().strip("'\"")
    return opts


def expand_pattern(pattern: str, job_id: str, job_name: str, node: str) -> str:
    """Slurm filename patterns: %j/%A job id, %x name, %u user, %N node, %% percent."""
    table = {"j": job_id, "A": job_id, "x": job_name, "u": getpass.getuser(), "N": node, "%": "%"}
    return re.sub(r"%([jAxuN%])", lambda m: table[m.group(1)], pattern)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class LocalExecutor(Executor):
    """Detached local processes that look like Slurm jobs."""

    name = "local"
    summary = "detached processes on this machine (no Slurm)"
    auto_priority = 0

    @classmethod
    def create(cls, runner: Runner, state_dir: Path) -> LocalExecutor:
        return cls(state_dir / "local")

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()  # the poller thread and commands both reap children

    def _next_id(self) -> str:
        private_mkdir(self.state_dir)
        for n in itertools.count(1):
            try:
                (self.state_dir / f"local-{n}").mkdir()
            except FileExistsError:
                continue
            return f"local-{n}"
        raise AssertionError("unreachable")

    def submit(self, script: Path, *, cwd: Path, env: Mapping[str, str] | None = None) -> str:
        try:
            text = script.read_text()
        except OSError as exc:
            raise ExecutorError(f"cannot read {script}: {exc.strerror}") from None
        opts = sbatch_options(text)
        try:
            limit = parse_time_limit(opts.get("time", ""))
        except ValueError:
            raise ExecutorError(f"bad --time in {script}: {opts.get('time')!r}") from None
        job_id = self._next_id()
        node = socket.gethostname().split(".")[0]
        name = opts.get("job-name", script.stem)
        out = Path(cwd, expand_pattern(opts.get("output", "slurm-%j.out"), job_id, name, node))
        err = Path(cwd, expand_pattern(opts["error"], job_id, name, node)) if "error" in opts else out
        extra, env = env or {}, dict(os.environ)
        env.update({
            "SLURM_JOB_ID": job_id, "SLURM_JOBID": job_id, "SLURM_JOB_NAME": name, "SLURM_JOB_NODELIST": node,
            "SLURM_NODELIST": node, "SLURMD_NODENAME": node, "SLURM_NNODES": "1", "SLURM_JOB_NUM_NODES": "1",
            "SLURM_SUBMIT_DIR": str(cwd), "SLURM_CPUS_ON_NODE": str(os.cpu_count() or 1),
            "BENCHCTL_EXECUTOR": "local",
            **extra,
        })
        jdir = self.state_dir / job_id
        try:
            private_mkdir(out.parent)
            with out.open("ab") as out_fh, err.open("ab") as err_fh:
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", _WRAPPER, "benchctl-local", str(limit), str(script), str(jdir / "rc")],
                    stdin=subprocess.DEVNULL, stdout=out_fh, stderr=err_fh, cwd=cwd, env=env,
                    start_new_session=True,  # its own process group: cancel kills the whole tree
                )
        except OSError as exc:
            raise ExecutorError(f"cannot start {script}: {exc}") from None
        try:
            (jdir / "pid").write_text(str(proc.pid))
            (jdir / "node").write_text(node)
        except OSError as exc:  # a job benchctl cannot find again must not run: stop it at once
            self._kill_session(proc.pid, signals.SIGKILL)
            raise ExecutorError(f"cannot record local job {job_id}: {exc.strerror}: {exc.filename}") from None
        with self._lock:
            self._children[job_id] = proc
        return job_id

    def _reap(self) -> None:
        with self._lock:
            for job_id, proc in list(self._children.items()):
                if proc.poll() is not None:
                    del self._children[job_id]

    def _status(self, job_id: str) -> JobStatus | None:
        jdir = self.state_dir / job_id
        if not jdir.is_dir():
            return None
        node = (jdir / "node").read_text().strip() if (jdir / "node").exists() else ""
        cancelled = (jdir / "cancelled").exists()
        rc_file = jdir / "rc"
        if rc_file.exists() and rc_file.read_text().strip():
            rc = int(rc_file.read_text().strip())
            if cancelled:
                state = JobState.CANCELLED
            elif rc == _TIMEOUT_RC:
                state = JobState.TIMEOUT
            else:
                state = JobState.COMPLETED if rc == 0 else JobState.FAILED
            return JobStatus(job_id, state, state.value, node, "", rc, 0)
        pid_text = (jdir / "pid").read_text().strip() if (jdir / "pid").exists() else ""
        if pid_text and self._session_members(int(pid_text)):
            return JobStatus(job_id, JobState.RUNNING, "RUNNING", node)
        if not pid_text:
            return JobStatus(job_id, JobState.PENDING, "PENDING")
        if rc_file.exists() and rc_file.read_text().strip():
            return self._status(job_id)  # the wrapper wrote rc and exited between the rc check and the scan
        # Gone without an exit status: killed (by us, or by a reboot).
        state = JobState.CANCELLED if cancelled else JobState.FAILED
        return JobStatus(job_id, state, state.value, node, "process vanished" if not cancelled else "")

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        self._reap()
        found = {}
        for job_id in job_ids:
            status = self._status(job_id)
            if status is not None:
                found[job_id] = status
        return found

    def _pgid(self, job_id: str) -> int | None:
        pid_file = self.state_dir / job_id / "pid"
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def signal(self, job_id: str, signal: str) -> None:
        sid = self._pgid(job_id)
        if sid is None:
            raise UnknownJob(f"unknown local job {job_id}")
        sig = getattr(signals, f"SIG{signal.upper().removeprefix('SIG')}", None)
        if sig is None:
            raise ExecutorError(f"unknown signal {signal!r}")
        # Everything in the job's session but the wrapper, which must live on to record the exit status.
        # (`timeout` moves the script into a process group of its own, so killpg would miss it.)
        self._kill_session(sid, sig, spare_leader=True)

    @staticmethod
    def _session_members(sid: int) -> list[int]:
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry.name))
        return members

    def _kill_session(self, sid: int, sig: int, *, spare_leader: bool = False) -> int:
        count = 0
        for pid in self._session_members(sid):
            if spare_leader and (pid == sid or _comm(pid) == "timeout"):
                continue  # `timeout` would forward the signal a second time
            try:
                os.kill(pid, sig)
                count += 1
            except ProcessLookupError:
                pass
        return count

    def cancel(self, job_id: str) -> None:
        sid = self._pgid(job_id)
        jdir = self.state_dir / job_id
        if sid is None or not jdir.is_dir():
            raise UnknownJob(f"unknown local job {job_id}")
        status = self._status(job_id)
        if status is not None and status.state.is_final:
            return  # like scancel on a finished job: nothing to do
        (jdir / "cancelled").touch()
        self._kill_session(sid, signals.SIGTERM)
        deadline = time.monotonic() + 5  # Slurm's KillWait, shortened
        while time.monotonic() < deadline and self._session_members(sid):
            time.sleep(0.1)
            self._reap()
        self._kill_session(sid, signals.SIGKILL)
        self._reap()
