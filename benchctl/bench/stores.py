"""Vector stores over their HTTP APIs: the one interface the vector benchmark drives.

Ids are integers (row numbers of the data set); each adapter maps them to what its database wants
(Chroma: strings). Every call takes a ``requests.Session`` so each benchmark worker keeps its own
keep-alive connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import orjson
import requests

# A float32 numpy array (what the benchmark sends) or plain lists (what a user script might pass).
Vectors: TypeAlias = npt.NDArray[np.float32] | Sequence[Sequence[float]]
Vector: TypeAlias = npt.NDArray[np.float32] | Sequence[float]


class StoreError(RuntimeError):
    """The database answered with an error (message includes its text) or could not be reached."""


@dataclass(frozen=True)
class IndexParams:
    """HNSW parameters, named as in VectorDBBench."""

    metric: str = "l2"  # l2 | cosine | ip
    m: int = 16
    ef_construct: int = 100
    ef_search: int = 100


class VectorStore(ABC):
    """One database endpoint."""

    kind: str = ""

    def __init__(self, base_url: str, *, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = headers or {}

    def session(self) -> requests.Session:
        s = requests.Session()
        s.headers.update(self.headers)
        s.trust_env = False  # no proxies: compute nodes are reached directly
        return s

    def _send(self, s: requests.Session, method: str, path: str, body: Any = None) -> requests.Response:
        """One HTTP request; transport failures become StoreError, HTTP errors are left to the caller."""
        # orjson with numpy: float32 rows go out as they are; encoding 500x128 floats with the json module
        # costs more than the request itself.
        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            return s.request(method, self.base_url + path, data=data, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise StoreError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from None

    def _call(self, s: requests.Session, method: str, path: str, body: Any = None) -> Any:
        resp = self._send(s, method, path, body)
        if resp.status_code >= 400:
            raise StoreError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:300]}")
        return orjson.loads(resp.content) if resp.content else None

    @abstractmethod
    def create(self, s: requests.Session, collection: str, dim: int, params: IndexParams) -> None:
        """Create the collection (dropping an old one of that name first)."""

    @abstractmethod
    def insert(self, s: requests.Session, collection: str, ids: Sequence[int], vectors: Vectors) -> None:
        """Add vectors (rows of a float32 array are sent as is: float32 text is shorter than float64)."""

    @abstractmethod
    def count(self, s: requests.Session, collection: str) -> int:
        ...

    @abstractmethod
    def search(self, s: requests.Session, collection: str, vector: Vector, k: int) -> list[int]:
        """Ids of the k nearest neighbours, nearest first."""

    @abstractmethod
    def drop(self, s: requests.Session, collection: str) -> None:
        ...

    def version(self, s: requests.Session) -> str:
        return ""


class ChromaStore(VectorStore):
    """ChromaDB HTTP API v2 (``/api/v2/tenants/default_tenant/databases/default_database/...``)."""

    kind = "chroma"
    _SPACES = {"l2": "l2", "cosine": "cosine", "ip": "ip"}

    def __init__(self, base_url: str, *, tenant: str = "default_tenant", database: str = "default_database",
                 **kw: Any) -> None:
        super().__init__(base_url, **kw)
        self.prefix = f"/api/v2/tenants/{tenant}/databases/{database}/collections"
        self._ids: dict[str, str] = {}  # collection name -> id (data routes take the id)

    def create(self, s: requests.Session, collection: str, dim: int, params: IndexParams) -> None:
        self.drop(s, collection)
        hnsw = {"space": self._SPACES[params.metric], "ef_construction": params.ef_construct,
                "max_neighbors": params.m, "ef_search": params.ef_search}
        body = self._call(s, "POST", self.prefix, {"name": collection, "configuration": {"hnsw": hnsw}})
        self._ids[collection] = body["id"]

    def _cid(self, s: requests.Session, collection: str) -> str:
        if collection not in self._ids:
            self._ids[collection] = self._call(s, "GET", f"{self.prefix}/{collection}")["id"]
        return self._ids[collection]

    def insert(self, s: requests.Session, collection: str, ids: Sequence[int], vectors: Vectors) -> None:
        self._call(s, "POST", f"{self.prefix}/{self._cid(s, collection)}/add",
                   {"ids": [str(i) for i in ids], "embeddings": vectors})

    def count(self, s: requests.Session, collection: str) -> int:
        return int(self._call(s, "GET", f"{self.prefix}/{self._cid(s, collection)}/count"))

    def search(self, s: requests.Session, collection: str, vector: Vector, k: int) -> list[int]:
        body = self._call(s, "POST", f"{self.prefix}/{self._cid(s, collection)}/query",
                          {"query_embeddings": [vector], "n_results": k, "include": ["distances"]})
        return [int(i) for i in body["ids"][0]]

    def drop(self, s: requests.Session, collection: str) -> None:
        self._ids.pop(collection, None)
        try:
            s.delete(f"{self.base_url}{self.prefix}/{collection}", timeout=self.timeout)
        except requests.RequestException as exc:
            raise StoreError(f"DELETE collection {collection}: {exc}") from None

    def version(self, s: requests.Session) -> str:
        try:
            return str(self._call(s, "GET", "/api/v2/version"))
        except StoreError:
            return ""


STORES: dict[str, type[VectorStore]] = {"chroma": ChromaStore}
# Last: qdrant_store subclasses VectorStore and registers STORES["qdrant"] (safe in either import order).
from benchctl.bench import qdrant_store  # noqa: E402, F401
