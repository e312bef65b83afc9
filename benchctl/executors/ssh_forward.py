"""Local port forwards over the session's SSH connection (``ssh -L``, without a second ssh process).

A ``Forward`` listens on 127.0.0.1 (never on all interfaces: a service's key-less port must not be offered to the
laptop's network); every accepted connection opens a ``direct-tcpip`` channel to NODE:PORT as the login node sees
it, and one thread per connection copies bytes both ways. The channel is asked of ``connection.transport()`` at
accept time, so a forward keeps working after the connection was re-established.

``Forwards`` is the session's list: ``tunnel`` opens and closes them by id, the executor opens automatic ones for
``bench``/``check`` (``reach``), and all are closed when the shell exits.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import select
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchctl.executors.base import ExecutorError

if TYPE_CHECKING:
    from paramiko.channel import Channel

    from benchctl.executors.ssh_connect import SshConnection

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


@dataclass
class Forward:
    """127.0.0.1:local_port → remote_host:remote_port through the SSH connection."""

    id: int
    local_port: int
    remote_host: str
    remote_port: int
    label: str  # what it is for ("chroma 1234", "grafana of monitor 1240")
    auto: bool  # opened by benchctl itself (bench, check), not by `tunnel`
    connections: int = 0  # accepted so far
    errors: int = 0  # channels the login node could not open (service gone, port closed)
    _server: socket.socket | None = field(default=None, repr=False)
    _closed: threading.Event = field(default_factory=threading.Event, repr=False)
    _open: set[socket.socket] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def local(self) -> str:
        return f"127.0.0.1:{self.local_port}"

    @property
    def remote(self) -> str:
        return f"{self.remote_host}:{self.remote_port}"

    def serve(self, connection: SshConnection) -> None:
        """Accept until closed (run in a daemon thread)."""
        server = self._server
        assert server is not None
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([server], [], [], 0.5)
                if not ready:
                    continue
                client, peer = server.accept()
            except (OSError, ValueError):  # closed under us
                break
            self.connections += 1
            # Small requests (a vector query, an SSE token) must not wait for Nagle's delayed ACKs (~40 ms).
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(connection, client, peer), daemon=True,
                             name=f"benchctl-forward-{self.id}").start()

    def _pipe(self, connection: SshConnection, client: socket.socket, peer: tuple[str, int]) -> None:
        import paramiko

        try:
            channel: Channel = connection.transport().open_channel(
                "direct-tcpip", (self.remote_host, self.remote_port), peer, timeout=15)
        except (ExecutorError, paramiko.SSHException, OSError, EOFError) as exc:
            # The login node could not reach NODE:PORT (the job ended, the service is not listening yet).
            self.errors += 1
            log.info("forward %s → %s: %s", self.local, self.remote, exc)
            client.close()
            return
        with self._lock:
            self._open.add(client)
        both: list[Any] = [client, channel]
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select(both, [], [], 0.5)
                if client in ready:
                    data = client.recv(CHUNK)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in ready:
                    data = channel.recv(CHUNK)
                    if not data:
                        break
                    client.sendall(data)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            log.debug("forward %s: %s", self.local, exc)
        finally:
            with self._lock:
                self._open.discard(client)
            channel.close()
            with contextlib.suppress(OSError):
                client.close()

    def close(self) -> None:
        self._closed.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class Forwards:
    """The session's forwards, by id (ids are never reused within a session)."""

    def __init__(self, connection: SshConnection) -> None:
        self.connection = connection
        self._items: dict[int, Forward] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def open(self, remote_host: str, remote_port: int, *, local_port: int = 0, label: str = "",
             auto: bool = False) -> Forward:
        """Listen on 127.0.0.1:``local_port`` (0: any free port) and forward to remote_host:remote_port.
        ExecutorError when the local port is taken."""
        self.connection.transport()  # connect now: a wrong host fails here, not at the first request
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", local_port))
        except OSError as exc:
            server.close()
            raise ExecutorError(f"cannot listen on 127.0.0.1:{local_port}: {exc.strerror} (name another local "
                                "port, or 0 for any)") from None
        server.listen(64)
        with self._lock:
            forward = Forward(next(self._ids), server.getsockname()[1], remote_host, remote_port,
                              label or f"{remote_host}:{remote_port}", auto, _server=server)
            self._items[forward.id] = forward
        threading.Thread(target=forward.serve, args=(self.connection,), daemon=True,
                         name=f"benchctl-forward-{forward.id}").start()
        log.info("forward %d: %s → %s (%s)", forward.id, forward.local, forward.remote, forward.label)
        return forward

    def find(self, remote_host: str, remote_port: int) -> Forward | None:
        with self._lock:
            return next((f for f in self._items.values()
                         if (f.remote_host, f.remote_port) == (remote_host, remote_port)), None)

    def ensure(self, remote_host: str, remote_port: int, label: str = "") -> Forward:
        """The forward to remote_host:remote_port, opened automatically when there is none yet."""
        return self.find(remote_host, remote_port) or self.open(remote_host, remote_port, label=label, auto=True)

    def all(self) -> list[Forward]:
        with self._lock:
            return list(self._items.values())

    def close(self, forward_id: int) -> Forward | None:
        with self._lock:
            forward = self._items.pop(forward_id, None)
        if forward is not None:
            forward.close()
        return forward

    def close_all(self) -> list[Forward]:
        with self._lock:
            items, self._items = list(self._items.values()), {}
        for forward in items:
            forward.close()
        return items


__all__ = ["Forward", "Forwards"]
