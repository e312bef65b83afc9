"""The explicit registry of vector store APIs: ``STORES`` maps a name to its ``VectorStore`` class.

``bench chroma|qdrant`` (through the service's ``vector_store()``) and ``bench vector --store NAME`` look
the API up here; a new database is one module with a ``VectorStore`` subclass and one entry below.
"""

from __future__ import annotations

from benchctl.bench.vector.stores.base import IndexParams, StoreError, Vector, Vectors, VectorStore
from benchctl.bench.vector.stores.chroma import ChromaStore
from benchctl.bench.vector.stores.qdrant import QdrantStore
from benchctl.registry import Registry

STORES: Registry[type[VectorStore]] = Registry("vector store", (ChromaStore, QdrantStore), key=lambda cls: cls.kind)

__all__ = ["STORES", "ChromaStore", "IndexParams", "QdrantStore", "StoreError", "Vector", "VectorStore", "Vectors"]
