"""The vector store interface: the one API the vector benchmark drives (each database implements it).

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
    """The database answered with an error (message includes its text) or could not be reached. ``kind``
    names the failure for counting: ``HTTP 500``, ``ConnectionError``, ``ReadTimeout``, ..."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


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
    # The family of its Prometheus /metrics (``bench.timeline.FAMILIES``), sampled during a benchmark;
    # '' = the database has none (Chroma), so nothing is sampled and nothing said.
    metrics: str = ""

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
            raise StoreError(f"{method} {path}: {exc.__class__.__name__}: {exc}", exc.__class__.__name__) from None

    def _call(self, s: requests.Session, method: str, path: str, body: Any = None) -> Any:
        resp = self._send(s, method, path, body)
        if resp.status_code >= 400:
            raise StoreError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:300]}", f"HTTP {resp.status_code}")
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
