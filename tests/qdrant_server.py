"""A small real HTTP server speaking the part of Qdrant's REST API that benchctl uses.

No Qdrant server binary can be installed here (no Debian package, nothing on PyPI ships it), so this
stands in for one: a stdlib ``ThreadingHTTPServer`` whose routes, JSON shapes, status codes and API-key
checks follow Qdrant's (``src/actix``), backed by qdrant-client's local mode (``QdrantClient(":memory:")``,
an exact-search engine), so search results come from a real engine, not from canned answers. Request
bodies are validated with qdrant-client's own pydantic models of the REST API (unknown fields rejected).

Routes: ``GET /`` and ``GET /readyz`` (no API key needed, as in Qdrant); ``PUT|DELETE /collections/{name}``;
``PUT /collections/{name}/points[?wait=true]``; ``POST /collections/{name}/points/count``;
``POST /collections/{name}/points/query``.

Run as a program it reads Qdrant's own environment settings (``QDRANT__SERVICE__HTTP_PORT``,
``QDRANT__SERVICE__HOST``, ``QDRANT__SERVICE__API_KEY``), so a test can put it on PATH as ``qdrant`` and run
benchctl's real batch script against it.
"""

from __future__ import annotations

import hmac
import importlib.metadata
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import TypeAdapter, ValidationError
from qdrant_client import QdrantClient
from qdrant_client.http import models

VERSION = importlib.metadata.version("qdrant-client")
_INSERT = TypeAdapter(models.PointInsertOperations)
_PUBLIC = ("/", "/readyz")  # on Qdrant's API-key whitelist (src/actix/mod.rs), with /healthz and /livez


class HttpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _not_found(name: str) -> HttpError:
    return HttpError(404, f"Not found: Collection `{name}` doesn't exist!")


class QdrantTestServer:
    """One server on 127.0.0.1 (port 0 = any free port); ``requests`` records what clients sent."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None) -> None:
        self.api_key = api_key or None
        self.client = QdrantClient(":memory:")
        self.lock = threading.Lock()  # the local engine is not meant for concurrent use
        self.requests: list[dict[str, Any]] = []  # method, path, headers (lower-case names), body
        self.op_id = 0
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> QdrantTestServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="qdrant-test-server",
                                        daemon=True)  # short poll interval: stop() returns quickly
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever for a serve_forever() never started
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()
        self.client.close()

    # ---- the API -------------------------------------------------------------------------------
    def check_key(self, headers: dict[str, str]) -> None:
        """Qdrant's AuthKeys.validate_request: ``api-key`` header or ``Authorization: Bearer``."""
        if self.api_key is None:
            return
        key = headers.get("api-key")
        if key is None and headers.get("authorization", "").startswith("Bearer "):
            key = headers["authorization"][len("Bearer "):]
        if key is None:
            raise HttpError(401, "Must provide an API key or an Authorization bearer token")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise HttpError(401, "Invalid API key or JWT")

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) < 2 or parts[0] != "collections" or not parts[1]:
            raise HttpError(404, "")
        name, rest = parts[1], parts[2:]
        with self.lock:
            if not rest:
                return self._collection(method, name, body)
            if rest == ["points"] and method == "PUT":
                return self._upsert(name, body, query.get("wait", ["false"])[0] == "true")
            if rest == ["points", "count"] and method == "POST":
                return self._count(name, body)
            if rest == ["points", "query"] and method == "POST":
                return self._query(name, body)
        raise HttpError(404, "")

    def _collection(self, method: str, name: str, body: Any) -> Any:
        if method == "DELETE":
            return self.client.delete_collection(name)  # False when there was none: Qdrant answers 200 too
        if method == "PUT":
            req = _parse(models.CreateCollection, body)
            if self.client.collection_exists(name):
                raise HttpError(409, f"Wrong input: Collection `{name}` already exists!")
            if req.vectors is None:
                raise HttpError(400, "Wrong input: vectors config is required")
            self.client.create_collection(name, vectors_config=req.vectors, hnsw_config=req.hnsw_config)
            return True
        raise HttpError(404, "")

    def _exists(self, name: str) -> None:
        if not self.client.collection_exists(name):
            raise _not_found(name)

    def _upsert(self, name: str, body: Any, wait: bool) -> Any:
        req = _parse_with(_INSERT, body)
        self._exists(name)
        if isinstance(req, models.PointsList):
            points = req.points
        else:  # the columnar form: {"batch": {"ids": [...], "vectors": [...]}}
            points = [models.PointStruct(id=i, vector=v) for i, v in zip(req.batch.ids, req.batch.vectors, strict=True)]
        try:
            self.client.upsert(name, points=points, wait=True)
        except ValueError as exc:
            raise HttpError(400, _wrong_input(exc)) from None
        self.op_id += 1
        return {"operation_id": self.op_id, "status": "completed" if wait else "acknowledged"}

    def _count(self, name: str, body: Any) -> Any:
        req = _parse(models.CountRequest, body or {})
        self._exists(name)
        return {"count": self.client.count(name, count_filter=req.filter, exact=req.exact is not False).count}

    def _query(self, name: str, body: Any) -> Any:
        req = _parse(models.QueryRequest, body)
        self._exists(name)
        # req.params (hnsw_ef, ...) is validated above; the local engine searches exactly and ignores it.
        try:
            res = self.client.query_points(name, query=req.query, limit=req.limit or 10, query_filter=req.filter,
                                           with_payload=req.with_payload or False,
                                           with_vectors=req.with_vector or False)
        except ValueError as exc:
            raise HttpError(400, _wrong_input(exc)) from None
        return {"points": [p.model_dump(mode="json", exclude_none=True) for p in res.points]}


def _wrong_input(exc: Exception) -> str:
    text = str(exc)
    return text if text.startswith("Wrong input") else f"Wrong input: {text}"


def _parse(model: Any, body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise HttpError(400, f"Json deserialize error: {_first_error(exc)}") from None


def _parse_with(adapter: TypeAdapter[Any], body: Any) -> Any:
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        raise HttpError(400, f"Json deserialize error: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"


class _Handler(BaseHTTPRequestHandler):
    app: QdrantTestServer
    protocol_version = "HTTP/1.1"  # keep-alive, like Qdrant (actix)
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server_version = "qdrant-test-server"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self, method: str) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        record: dict[str, Any] = {"method": method, "path": url.path, "query": url.query, "headers": headers,
                                  "body": None}
        self.app.requests.append(record)
        if url.path in _PUBLIC and method == "GET":
            self._public(url.path)
            return
        try:
            self.app.check_key(headers)
        except HttpError as exc:  # Qdrant's auth middleware answers in plain text
            self._send(exc.code, exc.message.encode(), "text/plain; charset=utf-8")
            return
        try:
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                raise HttpError(400, f"Json deserialize error: {exc}") from None
            record["body"] = body
            result = self.app.handle(method, url.path, parse_qs(url.query), body)
        except HttpError as exc:
            if exc.code == 404 and not exc.message:  # no such route: actix's empty 404
                self._send(404, b"", "text/plain; charset=utf-8")
                return
            self._json(exc.code, {"status": {"error": exc.message}, "time": time.perf_counter() - started})
            return
        except Exception as exc:  # the engine failed: Qdrant's 500 Service internal error
            self._json(500, {"status": {"error": f"Service internal error: {exc}"},
                             "time": time.perf_counter() - started})
            return
        self._json(200, {"result": result, "status": "ok", "time": time.perf_counter() - started})

    def _public(self, path: str) -> None:
        if path == "/":
            self._json(200, {"title": "qdrant - vector search engine", "version": VERSION,
                             "commit": "qdrant-client-local-mode"})
        else:
            self._send(200, b"all shards are ready", "text/plain; charset=utf-8")

    def _json(self, code: int, payload: Any) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json")

    def _send(self, code: int, data: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


@contextmanager
def running(api_key: str | None = None) -> Iterator[QdrantTestServer]:
    """A started server on a free loopback port, stopped on exit."""
    server = QdrantTestServer(api_key=api_key).start()
    try:
        yield server
    finally:
        server.stop()


def main() -> int:
    """``qdrant`` stand-in: settings from Qdrant's environment variables, runs until TERM/INT."""
    port = int(os.environ.get("QDRANT__SERVICE__HTTP_PORT", "6333"))
    host = os.environ.get("QDRANT__SERVICE__HOST", "0.0.0.0")
    server = QdrantTestServer(host=host, port=port, api_key=os.environ.get("QDRANT__SERVICE__API_KEY"))
    storage = os.environ.get("QDRANT__STORAGE__STORAGE_PATH", "./storage")
    print(f"qdrant-test-server {VERSION} on {host}:{server.port} (cwd {os.getcwd()}, storage {storage}, "
          f"api key {'on' if server.api_key else 'off'})", flush=True)

    def _stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.httpd.serve_forever()
    server.httpd.server_close()
    print("qdrant-test-server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
