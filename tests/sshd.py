"""Helpers for the ssh executor's tests.

Against the REAL OpenSSH server of ``scripts/local-sshd.sh`` (127.0.0.1:2222, in front of the local Slurm): is it
up, a throwaway ``HOME`` holding its client key, and killing ONE client's session. Without a server (unit tests):
fakes at the paramiko seam -- ``FakeConnection`` answers commands from the fake Slurm after checking their
quoting, ``LocalSftp`` keeps the "remote" files in a local folder, ``FakeTransport`` opens real sockets for
forwards.

Without the server these tests skip -- unless ``BENCHCTL_REQUIRE_SSHD=1`` (set by ``scripts/test.sh``), where a
missing server is a failure, so CI can never go green by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchctl.executors.process import Completed
from benchctl.executors.ssh_connect import ConnectionLost, SshConnection, SshTarget
from tests.fakes import FakeSlurm

STATE = Path(os.environ.get("BENCHCTL_SSHD_DIR", "/tmp/benchctl-sshd"))
PORT = int(os.environ.get("BENCHCTL_SSHD_PORT", "2222"))
REMOTE = f"root@127.0.0.1:{PORT}"


@dataclass(frozen=True)
class Sshd:
    """The running test server: its master pid, client key and known_hosts file."""

    pid: int
    key: Path
    known_hosts: Path
    remote: str = REMOTE


def sshd_up() -> Sshd | None:
    """The server when it runs and accepts connections, else None."""
    try:
        pid = int((STATE / "sshd.pid").read_text().strip())
        os.kill(pid, 0)
        with socket.create_connection(("127.0.0.1", PORT), timeout=2):
            pass
    except (OSError, ValueError):
        return None
    return Sshd(pid, STATE / "client_key", STATE / "known_hosts")


def require_sshd() -> Sshd:
    """The server, or skip (fail under BENCHCTL_REQUIRE_SSHD=1)."""
    found = sshd_up()
    if found is None:
        why = f"the test sshd is not running on 127.0.0.1:{PORT} (scripts/local-sshd.sh start)"
        if os.environ.get("BENCHCTL_REQUIRE_SSHD") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return found


def laptop_home(home: Path, sshd: Sshd) -> Path:
    """Make ``home`` look like a laptop's: ~/.ssh/id_ed25519 is the test server's client key (no agent)."""
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(sshd.key, ssh / "id_ed25519")
    os.chmod(ssh / "id_ed25519", 0o600)
    return ssh / "id_ed25519"


_SS_LINE = re.compile(r"\S+\s+\S+\s+\S+\s+(\S+):(\d+)\s+(\S+):(\d+)\s+users:\((.*)\)")


def _connections() -> list[tuple[int, int, list[int]]]:
    """(local port, peer port, pids) of the loopback TCP connections, from ``ss -tnpH``."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, timeout=10).stdout
    found = []
    for line in out.splitlines():
        m = _SS_LINE.search(line)
        if m and m.group(1) == "127.0.0.1" and m.group(3) == "127.0.0.1":
            pids = [int(p) for p in re.findall(r"pid=(\d+)", m.group(5))]
            found.append((int(m.group(2)), int(m.group(4)), pids))
    return found


def client_ports(client_pid: int) -> set[int]:
    """Source ports of ``client_pid``'s connections to the test server."""
    return {local for local, peer, pids in _connections() if peer == PORT and client_pid in pids}


def logged_in(client_pid: int) -> bool:
    """Whether the server has authenticated a connection of ``client_pid`` (its log names the source port):
    cutting a connection before that would test a failed login, not a dropped session."""
    ports = client_ports(client_pid)
    text = (STATE / "sshd.log").read_text(errors="replace")
    return any(f"Accepted publickey for root from 127.0.0.1 port {port} " in text for port in ports)


def session_pids(client_pid: int) -> list[int]:
    """The sshd processes serving ``client_pid``'s connection(s) to the test server, found by the client's source
    port (``ss``): the per-connection children, never the listening master."""
    ports = client_ports(client_pid)
    return sorted({pid for local, peer, pids in _connections() if local == PORT and peer in ports for pid in pids})


def kill_session(client_pid: int, master_pid: int) -> list[int]:
    """SIGKILL the sshd side of ``client_pid``'s SSH connection (as a crashed login node or a dropped network
    would); returns the pids killed ([] when none was found)."""
    pids = [p for p in session_pids(client_pid) if p != master_pid]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # the monitor and its child may go together
            os.kill(pid, signal.SIGKILL)
    return pids


# ---- fakes at the paramiko seam (unit tests) -------------------------------------------------------------
TARGET = SshTarget("login", "login.example", "u100", 8822)


class CommentSlurm(FakeSlurm):
    """The fake Slurm, also keeping sbatch's --comment and answering ``squeue -u USER -o %i|%k``."""

    comments: dict[str, str]

    def _sbatch(self, argv: tuple[str, ...]) -> Completed:
        done = super()._sbatch(argv)
        comment = next((a.split("=", 1)[1] for a in argv if a.startswith("--comment=")), "")
        self.comments = {**getattr(self, "comments", {}), done.stdout.strip(): comment}
        return done

    def _squeue(self, argv: tuple[str, ...]) -> Completed:
        if "-j" in argv:
            return super()._squeue(argv)
        rows = [f"{i}|{c}" for i, c in getattr(self, "comments", {}).items()]
        return Completed(argv, 0, "\n".join(rows) + "\n", "")


class LocalFile:
    def __init__(self, path: str, mode: str) -> None:
        self.fh = open(path, mode)  # noqa: SIM115 - closed by __exit__, like paramiko's SFTPFile

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()

    def chmod(self, mode: int) -> None:
        os.fchmod(self.fh.fileno(), mode)

    def write(self, data: bytes) -> None:
        self.fh.write(data)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fh.fileno())

    def readv(self, chunks: list[tuple[int, int]]) -> Iterator[bytes]:
        for offset, length in chunks:
            self.fh.seek(offset)
            yield self.fh.read(length)


class LocalSftp:
    """The SFTPClient methods SftpFiles uses, on local files; ``fail`` makes the next N calls drop."""

    def __init__(self, home: Path) -> None:
        self.home, self.fail = home, 0

    def __getattr__(self, name: str) -> Any:
        ops: dict[str, Callable[..., Any]] = {
            "stat": os.stat, "mkdir": os.mkdir, "chmod": os.chmod, "listdir": os.listdir, "remove": os.remove,
            "posix_rename": os.replace, "rename": os.rename, "open": LocalFile,
            "normalize": lambda _path: str(self.home)}
        op = ops[name]

        def call(*args: Any) -> Any:
            if self.fail:
                self.fail -= 1
                raise EOFError("connection reset")
            return op(*args)

        return call


class FakeTransport:
    """``open_channel("direct-tcpip", (host, port), peer)`` → a real socket to host:port (what sshd would do)."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int]] = []

    def open_channel(self, kind: str, dest: tuple[str, int], peer: tuple[str, int], timeout: float = 0) -> Any:
        import socket

        assert kind == "direct-tcpip"
        self.opened.append(dest)
        return socket.create_connection(dest, timeout=5)

    def is_active(self) -> bool:
        return True


class FakeConnection(SshConnection):
    """Commands go to the fake Slurm (after checking their quoting); ``drop`` makes a program's next run fail
    as a dropped connection does (``reach_slurm``: the sbatch got through before the drop)."""

    def __init__(self, slurm: FakeSlurm, home: Path) -> None:
        super().__init__(TARGET)
        self.slurm, self.sftp_client, self.fake_transport = slurm, LocalSftp(home), FakeTransport()
        self.commands: list[str] = []
        self.drops: dict[str, int] = {}
        self.reach_slurm = False

    def run(self, command: str, *, timeout: float = 30.0, input_text: str | None = None,
            argv: tuple[str, ...] = ()) -> Completed:
        self.commands.append(command)
        env: dict[str, str] = {}
        if argv[0] == "sbatch":
            script = shlex.split(command)
            assert script[:2] == ["sh", "-c"] and len(script) == 3
            assert shlex.split(script[2].rsplit(" && ", 1)[1]) == list(argv)  # the argv, quoted as such
            names = re.findall(r"read -r (\w+)", script[2])
            env = dict(zip(names, (input_text or "").splitlines(), strict=True))
        else:
            assert shlex.split(command) == list(argv)
        if self.drops.get(argv[0]):
            self.drops[argv[0]] -= 1
            if argv[0] == "sbatch" and self.reach_slurm:
                self.slurm.run(argv, env=env)
            self.reconnects += 1
            raise ConnectionLost(f"connection to {TARGET.label} lost while {argv[0]} ran")
        return self.slurm.run(argv, env=env)

    def sftp(self) -> Any:
        return self.sftp_client

    def transport(self) -> Any:
        return self.fake_transport

    def alive(self) -> bool:
        return True
