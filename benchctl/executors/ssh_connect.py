"""One SSH connection to a login node (paramiko): who to connect as, trusting the host, running commands.

Everything the ``ssh`` executor does -- Slurm commands, SFTP, port forwards -- shares the one ``SshConnection``
built here, so a laptop opens a single session to the cluster (login nodes limit them, and MFA sites ask once).

- ``resolve_target`` merges ``--remote USER@HOST[:PORT]`` / ``[remote]`` with ``~/.ssh/config`` (HostName, User,
  Port, IdentityFile, ProxyJump): explicit values win, as with ``ssh`` itself.
- Host keys are checked against known_hosts and an unknown key is refused (``RefuseUnknownHost``) with its
  SHA256 fingerprint and the command that accepts it: benchctl never trusts a host silently.
- A dropped connection (a killed sshd, a laptop that slept) is noticed by ``ConnectionLost``; ``ensure`` opens
  a new one. Whether to repeat a command after that is the caller's decision (queries yes, ``sbatch`` no).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import logging
import os
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from benchctl.executors.base import ExecutorError
from benchctl.executors.process import Completed

if TYPE_CHECKING:  # paramiko (~0.1 s to import) loads with the first connection, not with `benchctl -e help`
    import paramiko
    from paramiko.channel import Channel

log = logging.getLogger(__name__)

KEEPALIVE = 15  # seconds between keep-alive packets: NAT boxes and login-node firewalls drop idle sessions
CONNECT_TIMEOUT = 15.0


class ConnectionLost(ExecutorError):
    """The SSH connection dropped while a command ran: its outcome is unknown."""


class UnknownHostKey(ExecutorError):
    """The server's host key is not in known_hosts (refused; the message says how to accept it)."""


@dataclass(frozen=True)
class SshTarget:
    """Where to connect, after ``~/.ssh/config`` was applied."""

    host: str  # what the user named (an alias of ~/.ssh/config, or the host itself)
    hostname: str  # what is connected to
    user: str
    port: int = 22
    key_files: tuple[str, ...] = ()
    known_hosts: str = ""  # "" = ~/.ssh/known_hosts (and the system's file)
    proxy_jump: str = ""

    @property
    def label(self) -> str:
        """``user@host`` (``:port`` when not 22): how jobs and messages name the cluster."""
        return f"{self.user}@{self.host}" + (f":{self.port}" if self.port != 22 else "")


def parse_remote(text: str) -> tuple[str, str, int]:
    """``[USER@]HOST[:PORT]`` (``[v6addr]:PORT`` too) → (user or "", host, port or 0). ValueError when malformed."""
    value = text.strip()
    user, _, rest = value.rpartition("@")
    port = 0
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", rest)
    if match:
        host, port_text = match.group(1), match.group(2) or ""
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        host, port_text = rest, ""
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    if not host or any(c.isspace() for c in value) or host.startswith("-") or (user and user.startswith("-")):
        raise ValueError(f"{text!r}: expected USER@HOST[:PORT]")
    return user, host, port


def resolve_target(host: str, *, user: str = "", port: int = 0, key_file: str = "", known_hosts: str = "",
                   ssh_config: Path | None = None) -> SshTarget:
    """The connection settings for ``host``: explicit values, then its ``~/.ssh/config`` entry, then defaults."""
    import paramiko

    entry: dict[str, object] = {}
    path = ssh_config or Path.home() / ".ssh" / "config"
    if path.is_file():
        try:
            entry = dict(paramiko.SSHConfig.from_path(str(path)).lookup(host))
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise ExecutorError(f"cannot read {path}: {exc}") from None
    files = [key_file] if key_file else [str(f) for f in entry.get("identityfile", []) or []]  # type: ignore[attr-defined]
    config_port = str(entry.get("port") or "22")
    return SshTarget(
        host=host, hostname=str(entry.get("hostname") or host),
        user=user or str(entry.get("user") or "") or os.environ.get("USER") or getpass.getuser(),
        port=port or (int(config_port) if config_port.isdigit() else 22),
        key_files=tuple(os.path.expanduser(f) for f in files),
        known_hosts=os.path.expanduser(known_hosts) if known_hosts else "",
        proxy_jump=str(entry.get("proxyjump") or "").split(",")[0].strip(),
    )


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:…`` as ``ssh-keygen -lf`` and ``ssh`` print it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def accept_hint(target: SshTarget) -> str:
    """The command that adds the host's key to the known_hosts file benchctl reads."""
    file = target.known_hosts or "~/.ssh/known_hosts"
    port = f"-p {target.port} " if target.port != 22 else ""
    return f"ssh-keyscan {port}{target.hostname} >> {file}"


class RefuseUnknownHost:
    """Like paramiko's RejectPolicy, with a message that lets the user check the key and accept it. (paramiko
    only calls ``missing_host_key``; not deriving from its class keeps paramiko out of the import.)"""

    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise UnknownHostKey(
            f"unknown host key for {hostname} ({key.get_name()} {fingerprint(key)}): not connecting. If this is the "
            f"fingerprint your site publishes, accept it with: {accept_hint(self.target)}")


def _connect_error(target: SshTarget, exc: BaseException) -> ExecutorError:
    """One line for a failed connection, saying what to check."""
    import paramiko

    where = f"{target.hostname}:{target.port}"
    if isinstance(exc, ExecutorError):
        return exc
    if isinstance(exc, socket.gaierror):
        return ExecutorError(f"cannot connect to {target.label}: unknown host {target.hostname!r}")
    if isinstance(exc, paramiko.BadHostKeyException):
        return ExecutorError(f"the host key of {where} CHANGED (now {fingerprint(exc.key)}): someone may be "
                             f"impersonating it, or the cluster changed its keys; check with your site before "
                             f"removing the old key (ssh-keygen -R '[{target.hostname}]:{target.port}')")
    if isinstance(exc, paramiko.PasswordRequiredException):
        return ExecutorError(f"the key for {target.label} has a passphrase: load it into your agent (ssh-add)")
    if isinstance(exc, paramiko.AuthenticationException):
        tried = ", ".join(target.key_files) or "the agent and ~/.ssh/id_*"
        return ExecutorError(f"{target.label} refused the key (tried {tried}); only key login is used")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return ExecutorError(f"cannot connect to {where}: timed out (a VPN, a firewall, or the wrong port?)")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionError):
        return ExecutorError(f"cannot connect to {where}: connection refused (is sshd there, on this port?)")
    if isinstance(exc, OSError):
        return ExecutorError(f"cannot connect to {where}: {exc.strerror or exc}")
    return ExecutorError(f"ssh to {target.label} failed: {exc}")


class SshConnection:
    """The session's connection (thread-safe): reconnects on demand, counts the reconnects."""

    def __init__(self, target: SshTarget, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.connects = 0  # connections opened (the first, then one per reconnect)
        self.reconnects = 0
        self._client: paramiko.SSHClient | None = None
        self._jump: SshConnection | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()

    # ---- the connection --------------------------------------------------------------------------
    def _open(self) -> paramiko.SSHClient:
        import paramiko

        target = self.target
        client = paramiko.SSHClient()
        if target.known_hosts:
            try:
                client.load_host_keys(target.known_hosts)  # only this file: --known-hosts replaces the default
            except FileNotFoundError:
                pass  # empty: every host is unknown, and refused with the command that adds it
            except OSError as exc:
                raise ExecutorError(f"cannot read known hosts {target.known_hosts}: {exc.strerror}") from None
        else:
            client.load_system_host_keys()  # ~/.ssh/known_hosts (read only: nothing is ever written back)
            if os.path.isfile("/etc/ssh/ssh_known_hosts"):
                client.get_host_keys().load("/etc/ssh/ssh_known_hosts")
        client.set_missing_host_key_policy(cast("paramiko.MissingHostKeyPolicy", RefuseUnknownHost(target)))
        sock: Channel | None = None
        if target.proxy_jump:
            user, host, port = parse_remote(target.proxy_jump)
            jump = SshConnection(resolve_target(host, user=user, port=port, known_hosts=target.known_hosts),
                                 connect_timeout=self.connect_timeout)
            sock = jump.transport().open_channel("direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0))
            self._jump = jump
        try:
            client.connect(target.hostname, port=target.port, username=target.user,
                           # paramiko takes a list of keys (its stubs say one)
                           key_filename=list(target.key_files) or None,  # type: ignore[arg-type]
                           look_for_keys=not target.key_files,
                           allow_agent=True, timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout, sock=sock)
        except Exception as exc:
            client.close()
            raise _connect_error(target, exc) from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE)
        if target.proxy_jump == "":  # forwarded requests are small: no Nagle delay on the TCP link either
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        log.info("connected to %s", target.label)
        return client

    def alive(self) -> bool:
        client = self._client
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (again) when there is none."""
        with self._lock:
            if not self.alive():
                self._drop()
                self._client = self._open()
                self.connects += 1
                if self.connects > 1:
                    self.reconnects += 1
                    log.warning("reconnected to %s (%d)", self.target.label, self.reconnects)
            assert self._client is not None
            transport = self._client.get_transport()
            assert transport is not None
            return transport

    def sftp(self) -> paramiko.SFTPClient:
        """The session's SFTP channel (opened again after a reconnect)."""
        import paramiko

        with self._lock:
            transport = self.transport()
            if self._sftp is None or self._sftp.get_channel() is None or self._sftp.sock.closed:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(transport)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise ConnectionLost(f"cannot open SFTP on {self.target.label}: {exc}") from None
                if self._sftp is None:
                    raise ExecutorError(f"{self.target.label} offers no SFTP (Subsystem sftp in its sshd_config)")
            return self._sftp

    def reset_sftp(self) -> None:
        """Forget the SFTP channel after an error on it (the connection itself reconnects when it is down)."""
        with self._lock:
            if self._sftp is not None:
                self._sftp.close()
            self._sftp = None

    def drop(self) -> None:
        """Forget the connection (after an error that left it unusable): the next use reconnects."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._jump is not None:
            self._jump.close()
        self._client = self._jump = self._sftp = None

    def close(self) -> None:
        self.drop()

    # ---- commands ----------------------------------------------------------------------------------
    def run(self, command: str, *, timeout: float = 30.0, input_text: str | None = None,
            argv: tuple[str, ...] = ()) -> Completed:
        """Run ``command`` (already quoted shell text) on the login node; ConnectionLost when the connection
        drops before it has ended (its outcome is then unknown)."""
        import paramiko

        transport = self.transport()
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.exec_command(command)
            if input_text is not None:
                channel.sendall(input_text.encode())
            channel.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._forget(transport)
            raise ConnectionLost(f"connection to {self.target.label} lost: {str(exc) or type(exc).__name__}") from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if channel.closed or not transport.is_active():
                    raise self._lost(transport, argv)
                if time.monotonic() > deadline:
                    # Slurm's clients give up well within this: a silent link is the likelier cause (a laptop
                    # that slept, a dropped VPN), so the next command starts on a new connection.
                    self._forget(transport)
                    return Completed(argv, 124, out.decode(errors="replace"),
                                     f"{argv[0] if argv else 'command'} timed out after {timeout:.0f} s")
                select.select([channel], [], [], 0.5)  # the channel's pipe wakes us on data, exit or close
            status = channel.recv_exit_status()
        finally:
            channel.close()
        if status == -1:  # ended without a status: the server side was killed
            raise self._lost(transport, argv)
        return Completed(argv, status, out.decode(errors="replace"), err.decode(errors="replace"))

    def _forget(self, transport: paramiko.Transport) -> None:
        """Drop the connection ``transport`` belongs to -- unless another thread already replaced it."""
        with self._lock:
            if self._client is not None and self._client.get_transport() is transport:
                self._drop()

    def _lost(self, transport: paramiko.Transport, argv: tuple[str, ...]) -> ConnectionLost:
        self._forget(transport)
        return ConnectionLost(f"connection to {self.target.label} lost while {argv[0] if argv else 'a command'} ran")

    def home_dir(self) -> str:
        """The remote user's home folder (where ``~`` in remote paths points)."""
        with self._lock:
            return self.sftp().normalize(".")


__all__ = ["ConnectionLost", "RefuseUnknownHost", "SshConnection", "SshTarget", "UnknownHostKey", "accept_hint",
           "fingerprint", "parse_remote", "resolve_target"]
