"""The ``ssh`` executor: benchctl on a laptop, Slurm on a login node, one SSH connection between them.

It is the ``slurm`` executor with its commands sent over SSH: the argument lists, and the parsing of what
sbatch/squeue/sacct/scancel answer, are ``SlurmExecutor``'s own; only ``_run`` differs (each argv is quoted
with ``shlex.join``, never pasted into a shell string). The jobs' files are reached over SFTP (``SftpFiles``),
and services on compute nodes through local port forwards (``reach``, ``forwards``).

After a dropped connection, queries (squeue, sacct, scancel, file reads) are repeated once on a new connection;
``sbatch`` is not: each submission carries a unique ``--comment``, and after a drop the job is looked up by it
before anything is submitted again, so a lost answer never starts a second job.
"""

from __future__ import annotations

import logging
import posixpath
import re
import secrets
import shlex
import stat as st_mode
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from benchctl.executors.base import ExecutorError
from benchctl.executors.files import FileInfo, JobFiles, PathLike
from benchctl.executors.process import Completed, Runner
from benchctl.executors.slurm import SlurmExecutor, parse_accounts
from benchctl.executors.ssh_connect import ConnectionLost, SshConnection, parse_remote, resolve_target
from benchctl.executors.ssh_forward import Forwards

if TYPE_CHECKING:
    import paramiko

    from benchctl.config import Settings

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
T = TypeVar("T")
NO_HOST = ("the ssh executor needs a login node: --remote USER@HOST[:PORT], or host in the [remote] section of "
           "the config")
# After a drop during sbatch: how often (and how far apart) squeue is asked whether the job arrived.
LOOKUPS, LOOKUP_GAP = 2, 2.0


class SftpFiles(JobFiles):
    """The jobs' files on the login node, over the connection's SFTP channel. Every operation is idempotent
    (a whole file is replaced, never appended), so each is repeated once after a dropped connection."""

    def __init__(self, connection: SshConnection) -> None:
        self.connection = connection
        self._lock = threading.Lock()  # one SFTP request at a time: the poller thread shares the channel

    def _do(self, what: str, op: Callable[[paramiko.SFTPClient], T]) -> T:
        import paramiko

        for attempt in (1, 2):
            try:
                with self._lock:
                    return op(self.connection.sftp())
            except (OSError, EOFError, paramiko.SSHException) as exc:
                # A file error (no such file, permission) leaves the connection up: it is the answer.
                if isinstance(exc, OSError) and exc.errno is not None and self.connection.alive():
                    raise
                self.connection.reset_sftp()
                if attempt == 2:
                    raise ConnectionLost(f"connection to {self.connection.target.label} lost during {what}: "
                                         f"{str(exc) or type(exc).__name__}") from None
                log.warning("connection lost during %s (%s); again on a new connection", what, exc)
        raise AssertionError("unreachable")

    def stat(self, path: PathLike) -> FileInfo | None:
        try:
            attrs = self._do("stat", lambda sftp: sftp.stat(str(path)))
        except OSError:  # missing or unreadable (a lost connection is ConnectionLost, not an OSError)
            return None
        return FileInfo(attrs.st_size or 0, float(attrs.st_mtime or 0), st_mode.S_ISDIR(attrs.st_mode or 0))

    def read_bytes(self, path: PathLike, offset: int = 0, length: int | None = None) -> bytes:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(str(path), "rb") as fh:
                size = fh.stat().st_size or 0
                want = max(0, size - offset) if length is None else max(0, min(length, size - offset))
                # readv pipelines the requests: one round trip instead of one per 32 KiB over a slow link.
                return b"".join(fh.readv([(offset, want)])) if want else b""

        return self._do("read", read)

    def write_text(self, path: PathLike, text: str, *, mode: int = 0o600) -> None:
        target = str(path)
        self.mkdir(posixpath.dirname(target))
        temp = f"{target}.part-{secrets.token_hex(4)}"

        def write(sftp: paramiko.SFTPClient) -> None:
            with sftp.open(temp, "wb") as fh:
                fh.chmod(mode)  # before any byte is written: a key file is never readable by others
                fh.write(text.encode())
            try:
                sftp.posix_rename(temp, target)  # replaces atomically (OpenSSH's extension)
            except OSError:
                if not self.connection.alive():
                    raise
                if _exists(sftp, target):  # a server without posix-rename: plain rename refuses to replace
                    sftp.remove(target)
                sftp.rename(temp, target)

        self._do("write", write)

    def mkdir(self, path: PathLike, *, mode: int = 0o700) -> None:
        def make(sftp: paramiko.SFTPClient) -> None:
            missing = []
            current = str(path)
            while current not in ("", "/") and not _exists(sftp, current):
                missing.append(current)
                current = posixpath.dirname(current)
            for folder in reversed(missing):
                try:
                    sftp.mkdir(folder, mode)
                except OSError:
                    if not _exists(sftp, folder):
                        raise
                    continue
                sftp.chmod(folder, mode)  # mkdir's mode is cut by the server's umask

        self._do("mkdir", make)

    def listdir(self, path: PathLike) -> list[str]:
        try:
            return sorted(self._do("listdir", lambda sftp: sftp.listdir(str(path))))
        except OSError:
            return []

    def chmod(self, path: PathLike, mode: int) -> None:
        self._do("chmod", lambda sftp: sftp.chmod(str(path), mode))


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
    except FileNotFoundError:
        return False
    return True


class SshExecutor(SlurmExecutor):
    """Slurm on a remote login node, over one paramiko connection."""

    name = "ssh"
    summary = "Slurm on a login node over SSH (--remote USER@HOST[:PORT]; from a laptop)"
    auto_priority = -10  # never chosen by `auto`: it needs a remote host

    def __init__(self, connection: SshConnection, *, runner: Runner | None = None, timeout: float = 30.0) -> None:
        super().__init__(runner or Runner(), timeout=timeout)
        self.connection = connection
        self.files = SftpFiles(connection)
        self.forwards = Forwards(connection)

    @classmethod
    def create(cls, runner: Runner, state_dir: Path) -> SshExecutor:
        raise ExecutorError(NO_HOST)  # built by from_settings: it needs the [remote] settings

    @classmethod
    def from_settings(cls, settings: Settings, runner: Runner) -> SshExecutor:
        """The executor for ``[remote]`` (``--remote`` and ``--known-hosts`` land there); no connection yet."""
        from benchctl.config import ConfigError

        text = settings.text("remote.host")
        if not text:
            raise ExecutorError(NO_HOST)
        try:
            user, host, port = parse_remote(text)
        except ValueError as exc:
            raise ConfigError(f"remote.host: {exc}") from None
        target = resolve_target(host, user=user or settings.text("remote.user"),
                                port=port or int(settings.get("remote.port")),
                                key_file=settings.text("remote.key_file"),
                                known_hosts=settings.text("remote.known_hosts"))
        executor = cls(SshConnection(target), runner=runner)
        executor.attach(settings)
        return executor

    def attach(self, settings: Settings) -> None:
        """Paths of jobs name the login node's user and home (``{user}``, ``~``), not the laptop's."""
        from benchctl.config import RemoteSide

        settings.remote = RemoteSide(user=self.connection.target.user, home_dir=self.connection.home_dir)

    @classmethod
    def available(cls, runner: Runner) -> bool:
        return False

    @property
    def label(self) -> str:
        """``user@host[:port]``: how the job table and messages name the cluster."""
        return self.connection.target.label

    @property
    def remote(self) -> str:
        return self.label

    # ---- commands over the connection ---------------------------------------------------------------
    def _run(self, argv: list[str], **kw: object) -> Completed:
        """A query (squeue, sacct, scancel, sacctmgr, scontrol): repeated once after a dropped connection."""
        return self._remote(shlex.join(argv), tuple(argv), retry=True)

    def _remote(self, command: str, argv: tuple[str, ...], *, retry: bool, input_text: str | None = None
                ) -> Completed:
        try:
            res = self.connection.run(command, timeout=self.timeout, input_text=input_text, argv=argv)
        except ConnectionLost as exc:
            if not retry:
                raise
            log.warning("%s; running %s again on a new connection", exc, argv[0])
            res = self.connection.run(command, timeout=self.timeout, input_text=input_text, argv=argv)
        if res.returncode == 127 and "not found" in res.stderr:
            raise ExecutorError(f"{argv[0]} is not found on {self.label} (is Slurm on the PATH of a non-interactive "
                                "login there?)")
        return res

    def accounts(self) -> tuple[str, list[str]]:
        """As ``slurm``'s, for the remote user (the laptop's user name means nothing to the cluster)."""
        try:
            done = self._run(["sacctmgr", "-n", "-P", "show", "user", self.connection.target.user, "withassoc",
                              "format=defaultaccount,account"])
        except ExecutorError:
            return "", []
        return parse_accounts(done.stdout) if done.ok else ("", [])

    # ---- submit: never twice -------------------------------------------------------------------------
    def submit(self, script: Path, *, cwd: Path, env: Mapping[str, str] | None = None) -> str:
        self._check_controller()
        env = dict(env or {})
        for key, value in env.items():
            if not _ENV_NAME.fullmatch(key) or "\n" in value or "\r" in value:
                raise ExecutorError(f"cannot pass {key!r} to the job over SSH (a name or a one-line value)")
        token = f"benchctl-{secrets.token_hex(8)}"
        argv = ("sbatch", "--export=ALL", "--parsable", f"--comment={token}", str(script))
        # The job's secrets travel on stdin (read into the environment by the remote shell): on a command line
        # they would show in `ps` on the login node for every user.
        steps = [f"IFS= read -r {name} && export {name}" for name in sorted(env)]
        steps += [f"cd -- {shlex.quote(str(cwd))}", shlex.join(argv)]
        command = "sh -c " + shlex.quote(" && ".join(steps))
        stdin = "".join(env[name] + "\n" for name in sorted(env))
        try:
            res = self._remote(command, argv, retry=False, input_text=stdin)
        except ConnectionLost as exc:
            job_id = self._after_drop(token, exc)
            if job_id:
                return job_id
            log.warning("job %s never reached Slurm; submitting it again", token)
            res = self._remote(command, argv, retry=False, input_text=stdin)
        return self._submitted_id(res)

    def _after_drop(self, token: str, exc: ConnectionLost) -> str:
        """The id of the job submitted with ``token`` when it reached Slurm before the drop ("" when not)."""
        log.warning("%s during sbatch; looking for job %s before submitting again", exc, token)
        for attempt in range(LOOKUPS):
            if attempt:
                time.sleep(LOOKUP_GAP)  # an sbatch cut off mid-way may still be talking to slurmctld
            found = self.find_by_comment(token)
            if found:
                log.warning("job %s (%s) was submitted before the connection dropped", found, token)
                return found
        return ""

    def find_by_comment(self, token: str) -> str:
        """The job of this user carrying ``--comment=token`` (squeue ``%k``), "" when there is none."""
        user = self.connection.target.user
        try:
            res = self._run(["squeue", "-h", "-t", "all", "-u", user, "-o", "%i|%k"])
        except ExecutorError as err:
            raise ExecutorError(f"the connection dropped during sbatch and Slurm cannot be asked whether the job "
                                f"arrived ({err}); check 'squeue -u {user}' on {self.label} before starting "
                                "again") from None
        if not res.ok:
            raise ExecutorError(f"the connection dropped during sbatch and squeue failed ({res.error_text()}); "
                                f"check 'squeue -u {user}' on {self.label} before starting again")
        for line in res.stdout.splitlines():
            job_id, _, comment = line.strip().partition("|")
            if comment.strip() == token and job_id:
                return job_id
        return ""

    # ---- the client side ---------------------------------------------------------------------------
    def reach(self, host: str, port: int) -> tuple[str, int]:
        """host:port of a compute node, as the laptop reaches it: an automatic forward on 127.0.0.1."""
        forward = self.forwards.ensure(host, port, label="check, bench")
        return "127.0.0.1", forward.local_port

    def close(self) -> None:
        self.forwards.close_all()
        self.connection.close()


__all__ = ["SshExecutor"]
