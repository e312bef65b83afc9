"""Qdrant over its REST API (``/collections/...``): the ``qdrant`` entry of ``STORES``.

Qdrant answers ``{"result": ..., "status": "ok", "time": s}``, or ``{"status": {"error": "..."}, "time": s}``
with an HTTP error code; the API key (when the server has one) goes in the ``api-key`` header. Ids are
Qdrant's unsigned-integer point ids, so the benchmark's row numbers are used as they are.

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson
import requests

from benchctl.bench.vector.stores.base import IndexParams, StoreError, Vector, Vectors, VectorStore


class QdrantStore(VectorStore):
    """Qdrant REST API (v1.10+: search goes through the universal ``/points/query``)."""

    kind = "qdrant"
    metrics = "qdrant"
    _DISTANCES = {"l2": "Euclid", "cosine": "Cosine", "ip": "Dot"}

    def __init__(self, base_url: str, *, api_key: str | None = None, **kw: Any) -> None:
        super().__init__(base_url, **kw)
        if api_key:
            self.headers = {**self.headers, "api-key": api_key}
        # ef_search is a per-query parameter in Qdrant: remember the params each collection was created with.
        self._params: dict[str, IndexParams] = {}

    # ---- HTTP ------------------------------------------------------------------------------------
    def _request(self, s: requests.Session, method: str, path: str, body: Any = None,
                 *, ok_missing: bool = False) -> Any:
        """One call; returns the response's ``result``. StoreError carries Qdrant's own error text."""
        resp = self._send(s, method, path, body)
        if ok_missing and resp.status_code == 404:
            return None
        if resp.status_code in (401, 403):
            sent = "api-key" in {k.lower() for k in s.headers}
            hint = ("the server rejected the API key that was sent" if sent else
                    "the server requires an API key and none was sent (pass the key named by the service's "
                    "--api-key-env to the benchmark)")
            raise StoreError(f"{method} {path}: HTTP {resp.status_code}: {hint}: {resp.text[:200].strip()}",
                             f"HTTP {resp.status_code}")
        try:
            answer = orjson.loads(resp.content) if resp.content else None
        except orjson.JSONDecodeError:
            answer = None
        if resp.status_code >= 400:
            status = answer.get("status") if isinstance(answer, dict) else None
            error = status.get("error") if isinstance(status, dict) else None
            raise StoreError(f"{method} {path}: HTTP {resp.status_code}: {error or resp.text[:300]}",
                             f"HTTP {resp.status_code}")
        if not isinstance(answer, dict) or "result" not in answer:
            raise StoreError(f"{method} {path}: unexpected answer (not a Qdrant response): {resp.text[:300]}")
        return answer["result"]

    @staticmethod
    def _path(collection: str, tail: str = "") -> str:
        return f"/collections/{quote(collection, safe='')}{tail}"

    # ---- VectorStore -----------------------------------------------------------------------------
    def create(self, s: requests.Session, collection: str, dim: int, params: IndexParams) -> None:
        distance = self._DISTANCES.get(params.metric)
        if distance is None:
            raise StoreError(f"qdrant: unknown metric {params.metric!r} (expected one of "
                             f"{', '.join(self._DISTANCES)})")
        self.drop(s, collection)
        self._request(s, "PUT", self._path(collection), {
            "vectors": {"size": dim, "distance": distance},
            "hnsw_config": {"m": params.m, "ef_construct": params.ef_construct},
        })
        self._params[collection] = params

    def insert(self, s: requests.Session, collection: str, ids: Sequence[int], vectors: Vectors) -> None:
        if len(ids) != len(vectors):
            raise StoreError(f"qdrant: {len(ids)} ids for {len(vectors)} vectors")
        rows = _array(vectors) if isinstance(vectors, np.ndarray) else vectors
        points = [{"id": int(i), "vector": v} for i, v in zip(ids, rows, strict=True)]
        # wait=true: the call returns once the points are applied, so a count right after sees them all.
        self._request(s, "PUT", self._path(collection, "/points?wait=true"), {"points": points})

    def count(self, s: requests.Session, collection: str) -> int:
        return int(self._request(s, "POST", self._path(collection, "/points/count"), {"exact": True})["count"])

    def search(self, s: requests.Session, collection: str, vector: Vector, k: int) -> list[int]:
        ef = self._params.get(collection, IndexParams()).ef_search
        query = _array(vector) if isinstance(vector, np.ndarray) else vector
        result = self._request(s, "POST", self._path(collection, "/points/query"),
                               {"query": query, "limit": k, "params": {"hnsw_ef": ef}, "with_payload": False})
        return [int(p["id"]) for p in result["points"]]

    def drop(self, s: requests.Session, collection: str) -> None:
        self._params.pop(collection, None)
        # Qdrant answers 200 {"result": false} for a collection that does not exist; a 404 is fine too.
        self._request(s, "DELETE", self._path(collection), ok_missing=True)

    def version(self, s: requests.Session) -> str:
        try:
            resp = s.get(self.base_url + "/", timeout=self.timeout)
            return str(resp.json().get("version", "")) if resp.status_code == 200 else ""
        except (requests.RequestException, ValueError, AttributeError):
            return ""


def _array(a: Any) -> Any:
    """What orjson serialises: a C-contiguous float32 array (a slice or a float64 array is not)."""
    return np.ascontiguousarray(a, dtype=np.float32)

