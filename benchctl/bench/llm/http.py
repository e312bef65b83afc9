"""The load generator's HTTP/1.1 transport: keep-alive connections as asyncio Protocols, responses parsed by
httptools (llhttp, the parser uvicorn uses).

Why not a general client: the clock is the product. A general client runs a request through several
coroutine hops (session, connector, a separate body-writer task) and hands response bytes through a stream
reader, and every hop is another trip around a busy event loop -- time that lands in TTFT but is the
client's, not the server's. Here the request is encoded before the clock starts and goes out in ONE
``transport.write`` right after it; response bytes are stamped in ``data_received``, the first Python code
that sees them, and handed to the stream parser with that stamp (the SSE/NDJSON parsing itself runs after
the request ends).

Errors keep the load generator's names: ``connection`` (refused/reset before a response), ``stream_cut``
(the connection ended inside a response), ``timeout``, ``protocol`` (not HTTP).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import httptools

Sink = Callable[[bytes, float], None]
ERROR_BODY_BYTES = 300


class RequestFailed(Exception):
    """A request that got no complete response; ``kind`` is the error type recorded for it."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Target:
    """Where requests go: host, port, TLS, and the URL's path prefix (a proxy may serve under one)."""

    host: str
    port: int
    tls: bool
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls, parts.path.rstrip("/"))

    def request(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
        """A complete POST request, ready for one write."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        prefix = self.prefix
        if prefix.endswith("/v1") and path.startswith("/v1/"):
            prefix = prefix[:-3]  # an OpenAI-style base URL (http://host:8000/v1) names the API root already
        default_port = 443 if self.tls else 80
        lines = [f"POST {prefix}{path} HTTP/1.1", f"Host: {host}" + (
            f":{self.port}" if self.port != default_port else ""), "User-Agent: benchctl", "Accept: */*",
            "Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.keep_alive = True
        self._waiter: asyncio.Future[int] | None = None
        self._sink: Sink | None = None
        self._now = 0.0
        self._status = 0
        self._headers_done = False
        self._delimited = False  # the response has a length or chunked encoding (else: ends at close)
        self._interim = False  # inside a 1xx interim response
        self.error_body = b""
        self._timer: asyncio.TimerHandle | None = None
        self.sent_at = 0.0  # when the current request was written (with _now: the last sign of life)

    # ---- asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._now = time.perf_counter()  # the arrival stamp: before any parsing
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(RequestFailed("protocol", f"bad HTTP response: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._delimited and exc is None:
            self._finish()  # a close-delimited body ends with the (clean) close of the connection
        elif self._headers_done:
            self._fail(RequestFailed("stream_cut", f"stream cut: the connection closed inside the response"
                                                   f"{f' ({exc})' if exc else ''}"))
        else:
            self._fail(RequestFailed("connection", f"connection lost before a response{f': {exc}' if exc else ''}"))

    # ---- httptools callbacks -------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key == b"content-length" or (key == b"transfer-encoding" and b"chunked" in value.lower()):
            self._delimited = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue / 103 Early Hints: the real response follows
            return
        self._headers_done = True
        self._status = status
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self._interim:
            return
        if self._status == 200:
            if self._sink is not None:
                self._sink(body, self._now)
        elif len(self.error_body) < ERROR_BODY_BYTES:
            self.error_body += body[:ERROR_BODY_BYTES - len(self.error_body)]

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self._delimited = False
            return
        self._finish()

    # ---- requests ----------------------------------------------------------------------------------
    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(self._status)

    def _fail(self, exc: RequestFailed) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.keep_alive = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _expire(self, timeout: float) -> None:
        self._fail(RequestFailed("timeout", f"timeout after {timeout:g} s"))
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def cut(self, kind: str, message: str) -> None:
        """End the request in flight now (the point's deadline, a stalled server): it fails as ``kind``."""
        self._fail(RequestFailed(kind, message))
        self.abort()

    @property
    def last_activity(self) -> float:
        """When the server last showed life on this connection: its last bytes, or the request's send."""
        return max(self._now, self.sent_at)

    def send(self, raw: bytes, sink: Sink, timeout: float) -> asyncio.Future[int]:
        """Write the request now; the future gives the HTTP status once the response is complete."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        if self.closed or self.transport is None or self.transport.is_closing():
            self._waiter.set_exception(RequestFailed("connection", "the connection was already closed"))
            return self._waiter
        self._sink, self._status, self._headers_done, self._delimited = sink, 0, False, False
        self._interim = False
        self.error_body = b""
        self._timer = loop.call_later(timeout, self._expire, timeout)
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(raw)
        return self._waiter


class Pool:
    """Idle keep-alive connections to one target; new ones are opened on demand (and by :meth:`warm`)."""

    def __init__(self, target: Target, connect_timeout: float = 30.0) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.idle: list[Connection] = []
        self.all: set[Connection] = set()
        self.busy: set[Connection] = set()  # carrying a request now
        self._ssl = ssl.create_default_context() if target.tls else None

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(Connection, self.target.host, self.target.port, ssl=self._ssl),
                self.connect_timeout)
        except asyncio.TimeoutError:
            raise RequestFailed("connection", f"no connection to {self.target.host}:{self.target.port} within "
                                              f"{self.connect_timeout:g} s") from None
        except OSError as exc:
            raise RequestFailed("connection", f"{exc.__class__.__name__}: {exc}") from None
        self.all.add(conn)
        return conn

    async def acquire(self) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                self.busy.add(conn)
                return conn  # no await on this path: the request goes out in the same loop step
        conn = await self._open()
        self.busy.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        self.busy.discard(conn)
        if conn.closed or not conn.keep_alive:
            conn.abort()
            self.all.discard(conn)
        else:
            self.idle.append(conn)

    async def warm(self, n: int) -> RequestFailed | None:
        """Open up to ``n`` connections ahead (set-up time stays out of the first requests). Returns the
        error when not one could be opened (the server is not there); partial failures are left for the
        requests to report."""
        results = await asyncio.gather(*(self._open() for _ in range(n - len(self.idle))), return_exceptions=True)
        opened = [c for c in results if isinstance(c, Connection)]
        self.idle.extend(opened)
        if not opened and results:
            error = next((r for r in results if isinstance(r, RequestFailed)), None)
            return error or RequestFailed("connection", f"no connection to {self.target.host}:{self.target.port}")
        return None

    def cut_busy(self, kind: str, message: str) -> None:
        """Fail every request in flight now (see Connection.cut)."""
        for conn in list(self.busy):
            conn.cut(kind, message)

    def close(self) -> None:
        for conn in self.all:
            if conn.transport is not None:
                conn.transport.close()
        self.all.clear()
        self.idle.clear()


__all__ = ["Connection", "Pool", "RequestFailed", "Target"]
