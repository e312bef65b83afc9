"""A fake Slurm at the subprocess seam (modelled on submitit's MockedSubprocess).

It answers sbatch/squeue/sacct/scancel the way Slurm 22.05 prints them, from an in-memory job list, so the
command engine above the seam runs unchanged. Used only by unit tests; integration tests use real Slurm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from benchctl.executors.files import FileInfo, JobFiles, PathLike
from benchctl.executors.process import CommandNotFound, Completed, Runner


@dataclass
class FakeJob:
    id: str
    state: str = "PENDING"
    nodes: str = ""
    reason: str = "None"
    exit_code: str = "0:0"
    script: str = ""
    env: dict[str, str] = field(default_factory=dict)  # what sbatch was given beyond the shell's own


@dataclass
class FakeSlurm(Runner):
    """In-memory Slurm. ``jobs`` can be edited by tests to move jobs between states."""

    next_id: int = 100
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    installed: bool = True
    fail_next: dict[str, Completed] = field(default_factory=dict)  # program -> forced result
    squeue_forgets: set[str] = field(default_factory=set)  # ids squeue no longer shows (aged out)
    # What `sacctmgr -n -P show user U withassoc format=defaultaccount,account` prints (one line per association),
    # and `sacctmgr -n -P show qos format=name,maxwall`.
    associations: str = "p200981|p200981\n"  # a user whose default project is p200981
    qos_table: str = ""

    def which(self, program: str) -> bool:
        return self.installed

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, env: Mapping[str, str] | None = None,
            cwd: str | None = None, input_text: str | None = None) -> Completed:
        argv = tuple(str(a) for a in argv)
        self.calls.append(argv)
        if not self.installed:
            raise CommandNotFound(f"{argv[0]}: command not found")
        if argv[0] in self.fail_next:
            return self.fail_next.pop(argv[0])
        handler = getattr(self, f"_{argv[0]}", None)
        if handler is None:
            return Completed(argv, 127, "", f"{argv[0]}: not faked")
        self._env = dict(env or {})
        return handler(argv)

    def _sbatch(self, argv: tuple[str, ...]) -> Completed:
        job_id = str(self.next_id)
        self.next_id += 1
        try:
            with open(argv[-1]) as fh:
                script = fh.read()
        except OSError:
            script = ""
        self.jobs[job_id] = FakeJob(job_id, script=script, env=getattr(self, "_env", {}))
        return Completed(argv, 0, f"{job_id}\n", "")

    def _ids(self, argv: tuple[str, ...]) -> list[str]:
        return argv[argv.index("-j") + 1].split(",")

    def _squeue(self, argv: tuple[str, ...]) -> Completed:
        ids = self._ids(argv)
        if any(i in self.squeue_forgets for i in ids):
            return Completed(argv, 1, "", "slurm_load_jobs error: Invalid job id specified")
        lines = [f"{j.id}|{j.state}|{j.nodes}|{j.reason}" for i in ids if (j := self.jobs.get(i))]
        return Completed(argv, 0, "\n".join(lines) + ("\n" if lines else ""), "")

    def _sacct(self, argv: tuple[str, ...]) -> Completed:
        lines = []
        for i in self._ids(argv):
            j = self.jobs.get(i)
            if j:
                nodes = j.nodes or "None assigned"
                lines.append(f"{j.id}|{j.state}|{j.exit_code}|00:00:05|{nodes}|{j.reason}")
        return Completed(argv, 0, "\n".join(lines) + ("\n" if lines else ""), "")

    def _sacctmgr(self, argv: tuple[str, ...]) -> Completed:
        if "qos" in argv:
            return Completed(argv, 0, self.qos_table, "")
        return Completed(argv, 0, self.associations, "")

    def _scancel(self, argv: tuple[str, ...]) -> Completed:
        job = self.jobs.get(argv[-1])
        if job is None:  # as Slurm 22.05 answers for an id it does not know
            return Completed(argv, 1, "", f"scancel: error: Kill job error on job id {argv[-1]}: "
                                          "Invalid job id specified\n")
        if not any(a.startswith("--signal") for a in argv):
            job.state = "CANCELLED by 0"
        return Completed(argv, 0, "", "")


class MemoryFiles(JobFiles):
    """A job's files held in memory: proves that nothing above the executor opens a job's path itself."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.dirs: set[str] = set()
        self.modes: dict[str, int] = {}
        self.mtimes: dict[str, float] = {}
        self.clock = 1_000_000.0

    @staticmethod
    def _key(path: PathLike) -> str:
        return str(PurePosixPath(str(path)))

    def put(self, path: PathLike, text: str | bytes) -> None:
        key = self._key(path)
        self.data[key] = text.encode() if isinstance(text, str) else text
        self.clock += 1
        self.mtimes[key] = self.clock
        self.mkdir(PurePosixPath(key).parent)

    def stat(self, path: PathLike) -> FileInfo | None:
        key = self._key(path)
        if key in self.data:
            return FileInfo(len(self.data[key]), self.mtimes[key], False)
        return FileInfo(0, 0.0, True) if key in self.dirs else None

    def read_bytes(self, path: PathLike, offset: int = 0, length: int | None = None) -> bytes:
        key = self._key(path)
        if key not in self.data:
            raise FileNotFoundError(key)
        data = self.data[key][offset:]
        return data if length is None else data[:length]

    def write_text(self, path: PathLike, text: str, *, mode: int = 0o600) -> None:
        self.put(path, text)
        self.modes[self._key(path)] = mode

    def mkdir(self, path: PathLike, *, mode: int = 0o700) -> None:
        folder = PurePosixPath(self._key(path))
        for part in (folder, *folder.parents):
            if str(part) not in ("/", "."):
                self.dirs.add(str(part))

    def listdir(self, path: PathLike) -> list[str]:
        prefix = self._key(path) + "/"
        names = {k[len(prefix):].split("/", 1)[0] for k in [*self.data, *self.dirs] if k.startswith(prefix)}
        return sorted(names)

    def chmod(self, path: PathLike, mode: int) -> None:
        self.modes[self._key(path)] = mode
