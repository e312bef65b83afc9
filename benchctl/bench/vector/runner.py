"""The vector database benchmark (VectorDBBench-style phases), one client for every VectorStore.

create collection → ingest in batches (vectors/s, batch latency) → wait until all vectors are counted →
serial search (latency percentiles, recall@k against exact ground truth) → concurrency sweep
(barrier-synchronised workers, fixed duration per point: QPS, latency, recall, errors) → cleanup.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from benchctl.bench.results import RunWriter
from benchctl.bench.stats import summarize
from benchctl.bench.vector.config import VectorConfig
from benchctl.bench.vector.data import Dataset, recall_at_k
from benchctl.bench.vector.stores.base import IndexParams, StoreError, VectorStore

Progress = Callable[[str], None]


class VectorBench:
    """Runs all phases against one store; returns the result envelope's metrics and points."""

    def __init__(self, store: VectorStore, cfg: VectorConfig, data: Dataset, writer: RunWriter,
                 progress: Progress | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.data = data
        self.writer = writer
        self.progress = progress or (lambda msg: None)
        self.errors: Counter[str] = Counter()

    def _error(self, exc: Exception) -> str:
        kind = str(exc).split(":", 2)[1].strip() if str(exc).count(":") >= 2 else exc.__class__.__name__
        self.errors[kind] += 1
        return str(exc)[:300]

    # ---- phases ------------------------------------------------------------------------------
    def ingest(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.store.session()
        params = IndexParams(cfg.metric, cfg.m, cfg.ef_construct, cfg.ef_search)
        self.store.create(s, cfg.collection, self.data.dim, params)
        train = self.data.train
        latencies = []
        start = time.perf_counter()
        for i, lo in enumerate(range(0, len(train), cfg.batch)):
            chunk = train[lo:lo + cfg.batch]
            t0 = time.perf_counter()
            self.store.insert(s, cfg.collection, range(lo, lo + len(chunk)), chunk)
            ms = (time.perf_counter() - t0) * 1000
            latencies.append(ms)
            self.writer.request({"phase": "ingest", "batch": i, "size": len(chunk), "latency_ms": round(ms, 3)})
            if i % 10 == 0:
                self.progress(f"ingesting {lo + len(chunk)}/{len(train)}")
        insert_s = time.perf_counter() - start
        t0 = time.perf_counter()
        count = self.wait_counted(s)
        return {"vectors": len(train), "insert_s": insert_s, "vectors_per_s": len(train) / insert_s,
                "batch_latency_ms": summarize(latencies), "index_wait_s": time.perf_counter() - t0,
                "load_s": time.perf_counter() - start, "count": count}

    def wait_counted(self, s: Any) -> int:
        """Poll the count until every vector is there (databases index asynchronously)."""
        deadline = time.monotonic() + self.cfg.index_timeout
        while True:
            count = self.store.count(s, self.cfg.collection)
            if count >= len(self.data.train) or time.monotonic() > deadline:
                return count
            time.sleep(0.2)

    def _query(self, s: Any, qi: int) -> tuple[float, list[int]]:
        t0 = time.perf_counter()
        found = self.store.search(s, self.cfg.collection, self.data.queries[qi], self.cfg.k)
        return (time.perf_counter() - t0) * 1000, found

    def serial(self) -> dict[str, Any]:
        s = self.store.session()
        latencies, recalls = [], []
        for qi in range(len(self.data.queries)):
            try:
                ms, found = self._query(s, qi)
            except StoreError as exc:
                self.writer.request({"phase": "serial", "query": qi, "ok": False, "error": self._error(exc)})
                continue
            rec = recall_at_k(found, self.data.neighbors[qi], self.cfg.k)
            latencies.append(ms)
            recalls.append(rec)
            self.writer.request({"phase": "serial", "query": qi, "ok": True, "latency_ms": round(ms, 3),
                                 "recall": rec})
        return {"queries": len(latencies), "latency_ms": summarize(latencies),
                f"recall@{self.cfg.k}": sum(recalls) / len(recalls) if recalls else 0.0}

    def sweep_point(self, concurrency: int) -> dict[str, Any]:
        """``concurrency`` workers start together (barrier) and query for ``duration`` seconds."""
        barrier = threading.Barrier(concurrency + 1)
        lock = threading.Lock()
        latencies: list[float] = []
        recalls: list[float] = []
        failures = [0]
        stop_at = [0.0]

        def worker(w: int) -> None:
            s = self.store.session()
            qi = w * 7919 % len(self.data.queries)  # workers start at different queries
            mine_lat, mine_rec, fails = [], [], 0
            barrier.wait()
            while time.perf_counter() < stop_at[0]:
                t_rel = time.perf_counter()
                try:
                    ms, found = self._query(s, qi)
                except StoreError as exc:
                    fails += 1
                    with lock:
                        err = self._error(exc)
                    self.writer.request({"phase": "sweep", "concurrency": concurrency, "worker": w, "query": qi,
                                         "ok": False, "error": err, "t": round(t_rel, 6)})
                else:
                    rec = recall_at_k(found, self.data.neighbors[qi], self.cfg.k)
                    mine_lat.append(ms)
                    mine_rec.append(rec)
                    self.writer.request({"phase": "sweep", "concurrency": concurrency, "worker": w, "query": qi,
                                         "ok": True, "latency_ms": round(ms, 3), "recall": rec,
                                         "t": round(t_rel, 6)})
                qi = (qi + 1) % len(self.data.queries)
            with lock:
                latencies.extend(mine_lat)
                recalls.extend(mine_rec)
                failures[0] += fails

        threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(concurrency)]
        for t in threads:
            t.start()
        cpu0 = time.process_time()
        stop_at[0] = time.perf_counter() + 1e9
        barrier.wait()
        start = time.perf_counter()
        stop_at[0] = start + self.cfg.duration
        for t in threads:
            t.join(self.cfg.duration + 60)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        return {"concurrency": concurrency, "duration_s": elapsed, "requests": len(latencies),
                "errors": failures[0], "qps": len(latencies) / elapsed if elapsed else 0.0,
                "latency_ms": summarize(latencies),
                f"recall@{self.cfg.k}": sum(recalls) / len(recalls) if recalls else 0.0,
                "client_cpu_percent": 100.0 * cpu / elapsed if elapsed else 0.0}

    def run(self) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """All phases; returns (metrics, points, client_health). Cleanup runs even after a failure."""
        cfg = self.cfg
        s = self.store.session()
        try:
            self.progress(f"creating {cfg.collection} and ingesting {len(self.data.train)} vectors")
            ingest = self.ingest()
            self.progress(f"ingest done: {ingest['vectors_per_s']:.0f} vectors/s; serial search")
            serial = self.serial()
            points = []
            for c in cfg.concurrency:
                self.progress(f"concurrency {c} for {cfg.duration:g} s")
                points.append(self.sweep_point(c))
        finally:
            if not cfg.keep:
                try:
                    self.store.drop(s, cfg.collection)
                except StoreError as exc:
                    self._error(exc)
        metrics = {"ingest": ingest, "serial": serial, "dataset": {
            "source": self.data.source, "n": len(self.data.train), "dim": self.data.dim,
            "queries": len(self.data.queries), "k": cfg.k, "metric": cfg.metric}}
        health = {"max_client_cpu_percent": max((p["client_cpu_percent"] for p in points), default=0.0)}
        return metrics, points, health

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)
