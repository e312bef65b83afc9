"""The LLM load generator's HTTP/1.1 transport (benchctl.bench.llm.http) against real loopback servers that write
raw bytes, so every test controls exactly what goes on the wire and how it is split into TCP writes; and the
whole client against the in-process simulator."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httptools
import pytest

from benchctl.bench.llm.http import ERROR_BODY_BYTES, Connection, Pool, RequestFailed, Target
from benchctl.bench.llm.loadgen import LlmConfig, run_point
from benchctl.llmsim import SimConfig, running

T = TypeVar("T")
PATH = "/v1/completions"
BODY = b'{"model":"sim","prompt":"hi"}'


# ---- helpers -----------------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T], guard: float = 3.0) -> T:
    """``asyncio.run`` with a guard: a transport bug must fail the test, not hang the suite."""
    return asyncio.run(asyncio.wait_for(coro, guard))


async def until(cond: Callable[[], bool], timeout: float = 1.0) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def free_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def chunked(*pieces: bytes, end: bool = True) -> bytes:
    """Chunked transfer coding of ``pieces`` (+ the terminating zero chunk when ``end``)."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return out + (b"0\r\n\r\n" if end else b"")


def ok_length(body: bytes, *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


class Collect:
    """A sink: what the transport handed over, and the arrival stamps it came with."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.stamps: list[float] = []

    def __call__(self, data: bytes, stamp: float) -> None:
        self.parts.append(bytes(data))
        self.stamps.append(stamp)

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server, self.reader, self.writer = server, reader, writer

    async def request(self) -> bytes | None:
        """One complete request (head + Content-Length body), or None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        raw = head + await self.reader.readexactly(length)
        self.server.requests.append(raw)
        return raw

    async def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        """Each piece in its own write (TCP_NODELAY is on: with a pause, each arrives on its own)."""
        for i, piece in enumerate(pieces):
            if i and pause:
                await asyncio.sleep(pause)
            self.writer.write(piece)
            await self.writer.drain()

    async def wait_eof(self) -> None:
        while await self.reader.read(65536):
            pass


Handler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """``asyncio.start_server`` on a free loopback port, one ``handler(peer)`` per accepted connection; the
    connection is closed when the handler returns."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.port = 0
        self.accepted = 0
        self.finished = 0
        self.requests: list[bytes] = []
        self.peers: list[Peer] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.server: asyncio.Server | None = None

    @property
    def target(self) -> Target:
        return Target(self.host, self.port, False, "")

    def pool(self) -> Pool:
        return Pool(self.target)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        peer = Peer(self, reader, writer)
        self.peers.append(peer)
        try:
            await self.handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.finished += 1
            writer.close()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self.server is not None
        self.server.close()
        for peer in self.peers:
            peer.writer.transport.abort()  # ends every handler still reading
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=1.0)
        await self.server.wait_closed()


def serve(*responses: Sequence[bytes], pause: float = 0.0) -> Handler:
    """Keep-alive: answer the n-th request on a connection with the pieces of ``responses[n]``; when they
    run out, wait for the client to close."""

    async def handler(peer: Peer) -> None:
        for pieces in responses:
            if await peer.request() is None:
                return
            await peer.send(*pieces, pause=pause)
        await peer.wait_eof()

    return handler


def answer_then_close(*pieces: bytes, pause: float = 0.0) -> Handler:
    """Read one request, write ``pieces``, close the connection."""

    async def handler(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(*pieces, pause=pause)

    return handler


def raw_request(target: Target) -> bytes:
    return target.request(PATH, BODY)


# ---- Target ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("http://h", Target("h", 80, False, "")),
    ("http://h/", Target("h", 80, False, "")),
    ("https://h", Target("h", 443, True, "")),
    ("http://h:8000", Target("h", 8000, False, "")),
    ("https://h:8443/", Target("h", 8443, True, "")),
    ("http://h:8000/proxy/", Target("h", 8000, False, "/proxy")),
    ("http://h:8000/a/b", Target("h", 8000, False, "/a/b")),
    ("http://[::1]:9000", Target("::1", 9000, False, "")),
    ("https://[::1]", Target("::1", 443, True, "")),
])
def test_target_parse(url: str, expected: Target) -> None:
    assert Target.parse(url) == expected


@pytest.mark.parametrize("url", ["ftp://x", "localhost:8000", "http://", "", "//h:80", "file:///tmp/x"])
def test_target_parse_rejects_non_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        Target.parse(url)


class ParsedRequest:
    """httptools request-parser callbacks: what a real server would make of the bytes."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def parse_request(raw: bytes) -> tuple[str, ParsedRequest]:
    parsed = ParsedRequest()
    parser = httptools.HttpRequestParser(parsed)
    parser.feed_data(raw)
    return parser.get_method().decode(), parsed


def test_target_request_is_a_valid_post() -> None:
    body = '{"prompt":"h\u00e9llo \u2603"}'.encode()  # multi-byte: Content-Length counts bytes
    raw = Target.parse("http://h:8000/proxy/").request(PATH, body, {"Authorization": "Bearer t0k", "X-Trace": "1"})
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep and rest == body and raw.endswith(body)
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "POST /proxy/v1/completions HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Host"] == "h:8000"
    assert headers["Content-Length"] == str(len(body)) and len(body) > len(body.decode())
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer t0k" and headers["X-Trace"] == "1"
    method, parsed = parse_request(raw)  # and a real HTTP parser agrees
    assert method == "POST" and parsed.complete
    assert parsed.url == b"/proxy/v1/completions" and parsed.body == body
    assert [v for k, v in parsed.headers if k.lower() == "host"] == ["h:8000"]


@pytest.mark.parametrize(("url", "host"), [
    ("http://h", "h"),
    ("http://h:80", "h"),
    ("https://h", "h"),
    ("https://h:443/", "h"),
    ("https://h:80", "h:80"),
    ("http://h:443", "h:443"),
    ("http://[::1]:9000", "[::1]:9000"),
    ("http://[::1]", "[::1]"),
    ("https://[2001:db8::1]:8443/p", "[2001:db8::1]:8443"),
])
def test_target_request_host_header(url: str, host: str) -> None:
    method, parsed = parse_request(Target.parse(url).request("/x", b"{}"))
    assert method == "POST" and parsed.complete
    assert [v for k, v in parsed.headers if k.lower() == "host"] == [host]


def test_target_request_without_prefix_or_headers_or_body() -> None:
    raw = Target.parse("http://h/").request("/api/generate", b"")
    assert raw.startswith(b"POST /api/generate HTTP/1.1\r\n") and raw.endswith(b"Content-Length: 0\r\n\r\n")
    _, parsed = parse_request(raw)
    assert parsed.complete and parsed.body == b""


# ---- responses -----------------------------------------------------------------------------------------


def awkward_pieces(wire: bytes) -> list[bytes]:
    """``wire`` (a chunked response) cut inside a header, inside a chunk-size line, between a CR and its LF,
    one byte at a time over a chunk boundary, and inside the terminating zero chunk."""
    cuts = {wire.index(b"Transfer-") + 5}  # inside a header line
    size = wire.index(b"\r\n1a\r\n") + 2
    cuts |= {size + 1, size + 3}  # "1" | "a\r" | "\n..." : inside the size line and inside its CRLF
    second = wire.index(b"\r\n", size + 4 + 26)  # the CRLF closing the 26-byte chunk...
    cuts |= set(range(second - 3, second + 12))  # ...and the next size line, byte by byte
    last = wire.rindex(b"0\r\n\r\n")
    cuts |= {last - 1, last + 2, last + 4}  # "...\r" | "\n0\r\n" | "\r" | "\n"
    bounds = [0, *sorted(cuts), len(wire)]
    return [wire[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def test_chunked_response_split_awkwardly_is_decoded_in_order_and_the_connection_reused() -> None:
    chunks = [b'data: {"t":"one"}\n\n', b"x" * 26, b'data: {"t":"two"}\n\n', b"data: [DONE]\n\n"]
    wire = CHUNKED_HEAD + chunked(*chunks)
    pieces = awkward_pieces(wire)
    assert b"".join(pieces) == wire and len(pieces) > 20

    async def main() -> None:
        second = ok_length(b"second response")
        async with RawServer(serve(pieces, [second], pause=0.003)) as server:
            pool = server.pool()
            conn = await pool.acquire()
            raw = raw_request(pool.target)
            sink = Collect()
            t0 = time.perf_counter()
            status = await conn.send(raw, sink, 2.0)
            t1 = time.perf_counter()
            assert status == 200
            assert sink.body == b"".join(chunks)  # exactly the decoded body: no framing leaked
            assert len(sink.parts) >= len(chunks)  # delivered as it arrived, not at the end
            assert all(isinstance(s, float) for s in sink.stamps)
            assert sink.stamps == sorted(sink.stamps) and t0 <= sink.stamps[0] and sink.stamps[-1] <= t1
            assert sink.stamps[-1] > sink.stamps[0]  # stamped per arrival, the writes were spread in time
            assert conn.keep_alive and not conn.closed and conn.error_body == b""

            pool.release(conn)
            again = await pool.acquire()
            assert again is conn  # the same keep-alive connection
            sink2 = Collect()
            assert await again.send(raw, sink2, 2.0) == 200
            assert sink2.body == b"second response" and again.keep_alive
            pool.release(again)
            assert server.accepted == 1 and server.requests == [raw, raw]
            pool.close()

    run(main())


@pytest.mark.parametrize("split", [False, True])
def test_content_length_response(split: bool) -> None:
    body = b'{"choices":[{"text":"' + b"word " * 100 + b'"}]}'
    wire = ok_length(body)
    pieces = [wire[:30], wire[30:80], wire[80:81], wire[81:]] if split else [wire]

    async def main() -> None:
        async with RawServer(serve(pieces, pause=0.003)) as server:
            pool = server.pool()
            conn = await pool.acquire()
            sink = Collect()
            assert await conn.send(raw_request(pool.target), sink, 2.0) == 200
            assert sink.body == body and sink.stamps == sorted(sink.stamps)
            assert conn.keep_alive and not conn.closed
            pool.release(conn)
            assert pool.idle == [conn]
            pool.close()

    run(main())


def test_close_delimited_response_completes_at_close_and_is_not_reused() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"  # no length, not chunked: ends at close

    async def main() -> None:
        async with RawServer(answer_then_close(head, b"first half, ", b"second half", pause=0.01)) as server:
            pool = server.pool()
            conn = await pool.acquire()
            sink = Collect()
            assert await conn.send(raw_request(pool.target), sink, 2.0) == 200
            assert sink.body == b"first half, second half"
            assert not conn.keep_alive and conn.closed
            pool.release(conn)
            assert pool.idle == [] and conn not in pool.all
            conn2 = await pool.acquire()
            assert conn2 is not conn  # a new connection
            await until(lambda: server.accepted == 2)
            sink2 = Collect()
            assert await conn2.send(raw_request(pool.target), sink2, 2.0) == 200
            assert sink2.body == b"first half, second half"
            pool.close()

    run(main())


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_non_200_keeps_the_first_300_bytes_of_the_body_and_skips_the_sink(framing: str) -> None:
    body = b'{"error":{"message":"' + b"".join(b"%03d " % i for i in range(160)) + b'","code":400}}'
    assert len(body) > 2 * ERROR_BODY_BYTES
    if framing == "length":
        wire = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
            body) + body
        pieces = [wire[:100], wire[100:]]
    else:  # several on_body calls: the 300 bytes are assembled across chunks and arrivals
        head = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        pieces = [head, *(chunked(body[i:i + 70], end=False) for i in range(0, len(body), 70)), b"0\r\n\r\n"]

    async def main() -> None:
        async with RawServer(serve(pieces, [ok_length(b"fine")], pause=0.003)) as server:
            pool = server.pool()
            conn = await pool.acquire()
            sink = Collect()
            assert await conn.send(raw_request(pool.target), sink, 2.0) == 400
            assert sink.parts == []
            assert ERROR_BODY_BYTES == 300 and conn.error_body == body[:300]
            assert conn.keep_alive and not conn.closed  # a complete error response: the connection is fine
            # the next request on it starts with a clean error body
            sink2 = Collect()
            assert await conn.send(raw_request(pool.target), sink2, 2.0) == 200
            assert sink2.body == b"fine" and conn.error_body == b""
            pool.close()

    run(main())


def test_short_non_200_body_is_kept_whole() -> None:
    wire = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 7\r\n\r\nno room"

    async def main() -> None:
        async with RawServer(serve([wire])) as server:
            pool = server.pool()
            conn = await pool.acquire()
            sink = Collect()
            assert await conn.send(raw_request(pool.target), sink, 2.0) == 503
            assert conn.error_body == b"no room" and sink.parts == []
            pool.close()

    run(main())


# ---- failures ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_stream_cut_inside_the_body(framing: str) -> None:
    if framing == "chunked":  # two chunks, then the connection closes without the zero chunk
        pieces = [CHUNKED_HEAD, chunked(b"data: 1\n\n", end=False), chunked(b"data: 2\n\n", end=False)]
        delivered = b"data: 1\n\ndata: 2\n\n"
    else:  # 100 bytes announced, 10 sent
        pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"0123456789"]
        delivered = b"0123456789"

    async def main() -> None:
        async with RawServer(answer_then_close(*pieces, pause=0.003)) as server:
            pool = server.pool()
            conn = await pool.acquire()
            sink = Collect()
            with pytest.raises(RequestFailed) as info:
                await conn.send(raw_request(pool.target), sink, 2.0)
            assert info.value.kind == "stream_cut" and "stream cut" in str(info.value)
            assert sink.body == delivered  # what arrived before the cut was still handed over
            assert conn.closed and not conn.keep_alive
            pool.release(conn)
            assert pool.idle == [] and conn not in pool.all
            pool.close()

    run(main())


def test_connection_refused() -> None:
    async def main() -> None:
        pool = Pool(Target("127.0.0.1", free_port(), False, ""))
        with pytest.raises(RequestFailed) as info:
            await pool.acquire()
        assert info.value.kind == "connection" and "Refused" in str(info.value)
        assert pool.all == set() and pool.idle == []

    run(main())


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 20", b"HTTP/1.1 200 OK\r\nContent-Le"],
                         ids=["nothing", "half-status-line", "half-headers"])
def test_server_closes_before_a_complete_response_head(reply: bytes) -> None:
    async def main() -> None:
        async with RawServer(answer_then_close(reply)) as server:
            pool = server.pool()
            conn = await pool.acquire()
            sink = Collect()
            with pytest.raises(RequestFailed) as info:
                await conn.send(raw_request(pool.target), sink, 2.0)
            assert info.value.kind == "connection" and "before a response" in str(info.value)
            assert conn.closed and sink.parts == [] and server.requests == [raw_request(pool.target)]
            pool.release(conn)
            assert pool.idle == []
            pool.close()

    run(main())


@pytest.mark.parametrize("before_silence", [b"", CHUNKED_HEAD + chunked(b"data: 1\n\n", end=False)],
                         ids=["no-answer", "stalled-mid-stream"])
def test_timeout_closes_the_connection(before_silence: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        if before_silence:
            await peer.send(before_silence)
        await peer.wait_eof()  # then never another byte

    async def main() -> None:
        async with RawServer(handler) as server:
            pool = server.pool()
            conn = await pool.acquire()
            sink = Collect()
            t0 = time.perf_counter()
            with pytest.raises(RequestFailed) as info:
                await conn.send(raw_request(pool.target), sink, 0.2)
            elapsed = time.perf_counter() - t0
            assert info.value.kind == "timeout" and "0.2" in str(info.value)
            assert 0.15 <= elapsed < 1.0
            assert conn.closed and not conn.keep_alive
            await until(lambda: server.finished == 1)  # the server saw the connection go
            pool.release(conn)
            assert pool.idle == [] and conn not in pool.all
            assert await pool.acquire() is not conn
            await until(lambda: server.accepted == 2)
            pool.close()

    run(main())


@pytest.mark.parametrize("garbage", [
    b"NOT HTTP\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
    CHUNKED_HEAD + b"zz\r\nhello\r\n",
], ids=["not-http", "bad-status", "bad-length", "bad-chunk-size"])
def test_garbage_response_is_a_protocol_error(garbage: bytes) -> None:
    async def main() -> None:
        async with RawServer(serve([garbage])) as server:
            pool = server.pool()
            conn = await pool.acquire()
            with pytest.raises(RequestFailed) as info:
                await conn.send(raw_request(pool.target), Collect(), 2.0)
            assert info.value.kind == "protocol" and "bad HTTP response" in str(info.value)
            assert conn.closed and not conn.keep_alive
            pool.release(conn)
            assert pool.idle == []
            pool.close()

    run(main())


# ---- connection reuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize("response", [
    ok_length(b"bye", "Connection: close"),
    b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",  # HTTP/1.0 without keep-alive
], ids=["connection-close", "http-1.0"])
def test_connection_close_response_is_not_reused(response: bytes) -> None:
    async def main() -> None:
        # The server leaves the socket open: the client must go by the header, not by an EOF.
        async with RawServer(serve([response])) as server:
            pool = server.pool()
            conn = await pool.acquire()
            sink = Collect()
            assert await conn.send(raw_request(pool.target), sink, 2.0) == 200
            assert sink.body == b"bye" and not conn.keep_alive and not conn.closed
            pool.release(conn)
            assert conn.closed and pool.idle == [] and conn not in pool.all
            await until(lambda: server.finished == 1)  # the client closed it
            conn2 = await pool.acquire()
            assert conn2 is not conn
            await until(lambda: server.accepted == 2)
            assert await conn2.send(raw_request(pool.target), Collect(), 2.0) == 200
            pool.close()

    run(main())


def test_pool_reuses_connections_lifo_and_skips_closed_ones() -> None:
    async def main() -> None:
        async with RawServer(serve(*[[ok_length(b"ok")]] * 5)) as server:
            pool = server.pool()
            a, b = await pool.acquire(), await pool.acquire()
            assert a is not b
            for conn in (a, b):
                assert await conn.send(raw_request(pool.target), Collect(), 2.0) == 200
                pool.release(conn)
            assert await pool.acquire() is b  # last released, first reused
            pool.release(b)
            b_port = b.transport.get_extra_info("sockname")[1] if b.transport is not None else -1
            (b_peer,) = [p for p in server.peers if p.writer.get_extra_info("peername")[1] == b_port]
            b_peer.writer.close()  # the server drops b while it is idle
            await until(lambda: b.closed)
            assert await pool.acquire() is a  # the dead one is skipped
            assert server.accepted == 2
            pool.close()
            assert a.transport is not None and a.transport.is_closing()

    run(main())


def test_ipv6_loopback_end_to_end() -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback")

    async def main() -> None:
        async with RawServer(serve([ok_length(b"v6")]), host="::1") as server:
            target = Target.parse(f"http://[::1]:{server.port}/")
            pool = Pool(target)
            conn = await pool.acquire()
            sink = Collect()
            assert await conn.send(target.request(PATH, BODY), sink, 2.0) == 200
            assert sink.body == b"v6"
            assert f"\r\nHost: [::1]:{server.port}\r\n".encode() in server.requests[0]
            pool.close()

    run(main())


# ---- warm ------------------------------------------------------------------------------------------------


def test_warm_opens_connections_ahead() -> None:
    async def main() -> None:
        async with RawServer(serve()) as server:
            pool = server.pool()
            await pool.warm(3)
            await until(lambda: server.accepted == 3)
            assert len(pool.idle) == 3 and len(set(pool.idle)) == 3 and pool.all == set(pool.idle)
            assert all(isinstance(c, Connection) and not c.closed for c in pool.idle)
            await pool.warm(5)  # tops up to 5
            await until(lambda: server.accepted == 5)
            assert len(pool.idle) == 5
            await pool.warm(2)  # already enough
            await asyncio.sleep(0.05)
            assert server.accepted == 5 and len(pool.idle) == 5
            warmed = set(pool.idle)
            assert {await pool.acquire() for _ in range(5)} == warmed  # requests use them: no new connection
            assert server.accepted == 5
            pool.close()
            await until(lambda: server.finished == 5)

    run(main())


def test_warm_against_a_closed_port_does_not_raise() -> None:
    async def main() -> None:
        pool = Pool(Target("127.0.0.1", free_port(), False, ""))
        await pool.warm(4)
        assert pool.idle == [] and pool.all == set()
        with pytest.raises(RequestFailed) as info:  # the request reports it
            await pool.acquire()
        assert info.value.kind == "connection"

    run(main())


# ---- the whole client --------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer sk-test-123"}], ids=["plain", "auth-header"])
def test_run_point_against_the_simulator(headers: dict[str, str] | None) -> None:
    cfg = LlmConfig(backend="openai", model="sim", requests=20, output_tokens=8, input_tokens=4)
    with running(SimConfig(ttft_ms=5, itl_ms=1, output_tokens=8)) as sim:
        outcome = run(run_point(sim.url, cfg, 4, None, headers=headers), guard=10.0)
    assert len(outcome.results) == 20
    assert sorted(r.index for r in outcome.results) == list(range(20))
    for r in outcome.results:
        assert r.ok and r.error == "" and r.http_status == 200, r.error
        assert r.tokens == 8 and len(r.chunk_times) >= 1
        assert r.sent <= r.chunk_times[0] <= r.chunk_times[-1] <= r.end


def test_run_point_sends_the_extra_headers_and_reports_http_errors() -> None:
    body = b'{"error":"invalid api key"}'
    wire = b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
        body) + body

    async def main() -> None:
        cfg = LlmConfig(backend="openai", model="sim", requests=3, output_tokens=8, input_tokens=4)
        async with RawServer(serve(*[[wire]] * 3)) as server:
            outcome = await run_point(f"http://127.0.0.1:{server.port}/", cfg, 1, None,
                                      headers={"Authorization": "Bearer sk-test-123"})
            assert server.accepted == 1  # one user, one warmed keep-alive connection
        assert len(server.requests) == 3
        for raw in server.requests:
            assert raw.startswith(b"POST /v1/completions HTTP/1.1\r\n")
            assert b"\r\nAuthorization: Bearer sk-test-123\r\n" in raw
        for r in outcome.results:
            assert not r.ok and r.http_status == 401 and r.error_type == "http_401"
            assert r.error == 'HTTP 401: {"error":"invalid api key"}'

    run(main())


# ---- interim responses and resets (bugs found by these tests, fixed) -----------------------------------


@pytest.mark.parametrize("interim", [b"HTTP/1.1 100 Continue\r\n\r\n",
                                     b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"],
                         ids=["100", "103"])
def test_interim_1xx_response_is_skipped(interim: bytes) -> None:
    async def main() -> None:
        async with RawServer(serve([interim, ok_length(b"final")], pause=0.02)) as server:
            pool = server.pool()
            conn = await pool.acquire()
            sink = Collect()
            status = await conn.send(raw_request(pool.target), sink, 2.0)
            await asyncio.sleep(0.05)  # let the final response land if send() resolved early
            assert (status, sink.body) == (200, b"final")
            pool.close()

    run(main())


def test_close_delimited_body_ended_by_a_reset_is_a_stream_cut() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"partial")
        await asyncio.sleep(0.05)
        sock = peer.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        peer.writer.transport.abort()

    async def main() -> None:
        async with RawServer(handler) as server:
            pool = server.pool()
            conn = await pool.acquire()
            with pytest.raises(RequestFailed) as info:
                await conn.send(raw_request(pool.target), Collect(), 2.0)
            assert info.value.kind == "stream_cut"
            pool.close()

    run(main())


def test_openai_style_base_url_is_not_doubled() -> None:
    target = Target.parse("http://h:8000/v1")
    assert target.request("/v1/completions", b"{}").startswith(b"POST /v1/completions HTTP/1.1\r\n")
    assert Target.parse("http://h:8000/proxy").request("/v1/completions", b"{}").startswith(
        b"POST /proxy/v1/completions ")
    assert Target.parse("http://h:8000/v1").request("/api/generate", b"{}").startswith(b"POST /v1/api/generate ")


def test_send_on_a_closed_connection_fails_at_once() -> None:
    async def main() -> None:
        conn = Connection()
        with pytest.raises(RequestFailed) as info:
            await conn.send(b"POST / HTTP/1.1\r\n\r\n", lambda data, t: None, 600)
        assert info.value.kind == "connection"

    run(main())


def test_older_vllm_metric_names_are_read_as_todays() -> None:
    from benchctl.bench.llm.server_metrics import parse_metrics, server_means

    old = ('vllm:gpu_cache_usage_perc{model_name="m"} 0.5\n'
           'vllm:time_per_output_token_seconds_sum{model_name="m"} 2.0\n'
           'vllm:time_per_output_token_seconds_count{model_name="m"} 100\n')
    metrics = parse_metrics(old)
    assert metrics['vllm:kv_cache_usage_perc{model_name="m"}'] == 0.5
    assert server_means(metrics) == {"inter_token_latency": 20.0}
    both = old + 'vllm:kv_cache_usage_perc{model_name="m"} 0.7\n'
    assert parse_metrics(both)['vllm:kv_cache_usage_perc{model_name="m"}'] == 0.7  # today's name wins
