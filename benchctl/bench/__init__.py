"""Benchmark clients, a layer of their own: one ``BenchKind`` per kind of benchmark in one explicit registry
(``BENCH_KINDS``: llm, vector, io500), the shared result records and writer (``results``) and statistics
(``stats``). Every ``App`` works on its own copy of the registry (``app.bench_kinds``).
"""

from __future__ import annotations

from benchctl.bench.io500.kind import Io500Kind
from benchctl.bench.kind import BenchError, BenchKind, BenchTarget, Progress
from benchctl.bench.llm.kind import LlmKind
from benchctl.bench.vector.kind import VectorKind
from benchctl.registry import Registry

BENCH_KINDS: Registry[BenchKind] = Registry("bench kind", (LlmKind(), VectorKind(), Io500Kind()),
                                            key=lambda kind: kind.name)

__all__ = ["BENCH_KINDS", "BenchError", "BenchKind", "BenchTarget", "Progress"]
