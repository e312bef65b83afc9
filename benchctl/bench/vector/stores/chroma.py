"""ChromaDB over its HTTP API v2: the ``chroma`` entry of ``STORES``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

from benchctl.bench.vector.stores.base import IndexParams, StoreError, Vector, Vectors, VectorStore


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
