"""The vector database benchmark (VectorDBBench-style phases), one client for every VectorStore.

create collection → ingest in batches (vectors/s, batch latency) → wait until all vectors are counted →
serial search (latency percentiles, recall@k against exact ground truth) → concurrency sweep
(barrier-synchronised workers, fixed duration per point: QPS, latency, recall, errors) → cleanup.

Faults: every request times out after ``grace`` seconds; a phase or point in which the server has failed
every request for longer than ``grace`` (refused, reset, timed out) ends with a clear reason instead of
retrying on; workers back off after connection failures; failure records are capped per type. Ctrl-C or
SIGTERM stop the workers and leave what was measured in ``ingest_result``/``serial_result``/``points``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from benchctl.bench.results import RunWriter
from benchctl.bench.stats import summarize
from benchctl.bench.vector.config import VectorConfig
from benchctl.bench.vector.data import Dataset, recall_at_k
from benchctl.bench.vector.stores.base import IndexParams, StoreError, VectorStore

if TYPE_CHECKING:
    from benchctl.bench.sampler import Sampler

Progress = Callable[[str], None]
FAILURES_PER_TYPE = 100  # failure records per type and phase; the rest are counted only
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0


class ServerGone(StoreError):
    """The server failed every request for longer than the grace: the phase or point ends."""


class _FailureClock:
    """Since when every request has failed (shared by the workers of a point); 0 while requests succeed."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.since = 0.0
        self.last_error = ""

    def ok(self) -> None:
        self.since = 0.0

    def failed(self, error: str) -> None:
        self.since = self.since or time.monotonic()
        self.last_error = error

    @property
    def expired(self) -> bool:
        return bool(self.since) and time.monotonic() - self.since > self.grace

    def reason(self) -> str:
        return f"the server failed every request for {self.grace:g} s (last: {self.last_error[:160]})"


class VectorBench:
    """Runs all phases against one store; returns the result envelope's metrics and points."""

    def __init__(self, store: VectorStore, cfg: VectorConfig, data: Dataset, writer: RunWriter,
                 progress: Progress | None = None, timeline: Sampler | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.data = data
        self.writer = writer
        self.progress = progress or (lambda msg: None)
        self.timeline = timeline  # the server's /metrics sampler: phases and points mark their windows
        self.errors: Counter[str] = Counter()
        self._recorded: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self.stop = threading.Event()  # set on Ctrl-C / SIGTERM: workers end their current request and stop
        self.ingest_result: dict[str, Any] | None = None
        self.serial_result: dict[str, Any] | None = None
        self.points: list[dict[str, Any]] = []

    def _error(self, exc: StoreError) -> str:
        kind = exc.kind or (str(exc).split(":", 2)[1].strip() if str(exc).count(":") >= 2 else "error")
        with self._lock:
            self.errors[kind] += 1
        return str(exc)[:300]

    def _record_failure(self, phase: str, exc: StoreError, record: dict[str, Any]) -> str:
        """Count a failure; write its record unless FAILURES_PER_TYPE of its type were written in this phase."""
        message = self._error(exc)
        key = (phase, exc.kind or message.split(":", 1)[0])
        with self._lock:
            self._recorded[key] += 1
            write = self._recorded[key] <= FAILURES_PER_TYPE
        if write:
            self.writer.request({**record, "ok": False, "error": message})
        return message

    def _window(self, label: str) -> AbstractContextManager[Any]:
        return self.timeline.point(label) if self.timeline is not None else nullcontext()

    # ---- phases ------------------------------------------------------------------------------
    def ingest(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.store.session()
        params = IndexParams(cfg.metric, cfg.m, cfg.ef_construct, cfg.ef_search)
        self.store.create(s, cfg.collection, self.data.dim, params)
        train = self.data.train
        latencies = []
        start = time.perf_counter()
        for i, lo in enumerate(range(0, len(train), cfg.batch)):
            if self.stop.is_set():
                raise KeyboardInterrupt
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
        clock = _FailureClock(self.cfg.grace)
        latencies, recalls = [], []
        for qi in range(len(self.data.queries)):
            if self.stop.is_set():
                break
            try:
                ms, found = self._query(s, qi)
            except StoreError as exc:
                clock.failed(self._record_failure("serial", exc, {"phase": "serial", "query": qi}))
                if clock.expired:
                    raise ServerGone(f"serial search: {clock.reason()}", kind="unreachable") from None
                continue
            clock.ok()
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
        clock = _FailureClock(self.cfg.grace)
        stopped = [""]

        def worker(w: int) -> None:
            s = self.store.session()
            qi = w * 7919 % len(self.data.queries)  # workers start at different queries
            mine_lat, mine_rec, fails = [], [], 0
            backoff = 0.0
            barrier.wait()
            while time.perf_counter() < stop_at[0] and not self.stop.is_set() and not stopped[0]:
                t_rel = time.perf_counter()
                try:
                    ms, found = self._query(s, qi)
                except StoreError as exc:
                    fails += 1
                    record = {"phase": "sweep", "concurrency": concurrency, "worker": w, "query": qi,
                              "t": round(t_rel, 6)}
                    clock.failed(self._record_failure(f"sweep-{concurrency}", exc, record))
                    if clock.expired:
                        stopped[0] = clock.reason()
                    elif exc.kind in ("ConnectionError", "ConnectTimeout"):
                        # Bounded, jittered back-off: a dead server is not hammered by every worker at once.
                        backoff = min(BACKOFF_MAX, backoff * 2 or BACKOFF_FIRST)
                        time.sleep(backoff * random.uniform(0.5, 1.5))
                else:
                    clock.ok()
                    backoff = 0.0
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

        def record(**extra: Any) -> dict[str, Any]:
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu0
            with lock:
                return {"concurrency": concurrency, "duration_s": elapsed, "requests": len(latencies),
                        "errors": failures[0], "qps": len(latencies) / elapsed if elapsed else 0.0,
                        "latency_ms": summarize(latencies),
                        f"recall@{self.cfg.k}": sum(recalls) / len(recalls) if recalls else 0.0,
                        "client_cpu_percent": 100.0 * cpu / elapsed if elapsed else 0.0,
                        "stopped_early": stopped[0], **extra}

        try:
            for t in threads:  # a request in flight ends by its timeout (= grace) at the latest
                t.join(self.cfg.duration + self.cfg.grace + 5)
        except BaseException:  # Ctrl-C / SIGTERM: stop the workers, keep what they measured, then go on up
            self.stop.set()
            for t in threads:
                t.join(self.cfg.grace + 1)
            self.points.append(record(interrupted=True))
            raise
        return record()

    def run(self) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """All phases; returns (metrics, points, client_health). Cleanup runs even after a failure. Ctrl-C or
        SIGTERM propagate once the workers stopped; ``partial()`` then gives what was measured."""
        cfg = self.cfg
        s = self.store.session()
        try:
            self.progress(f"creating {cfg.collection} and ingesting {len(self.data.train)} vectors")
            with self._window("ingest"):
                self.ingest_result = self.ingest()
            self.progress(f"ingest done: {self.ingest_result['vectors_per_s']:.0f} vectors/s; serial search")
            with self._window("serial"):
                self.serial_result = self.serial()
            for c in cfg.concurrency:
                self.progress(f"concurrency {c} for {cfg.duration:g} s")
                with self._window(f"concurrency {c}"):
                    point = self.sweep_point(c)
                self.points.append(point)
                if point["stopped_early"]:
                    skipped = len(cfg.concurrency) - len(self.points)
                    self.progress(f"concurrency {c} stopped early: {point['stopped_early']}" +
                                  (f"; {skipped} point(s) skipped" if skipped else ""))
                    break
        finally:
            if not cfg.keep:
                try:
                    self.store.drop(s, cfg.collection)
                except StoreError as exc:
                    self._error(exc)
        return self.partial()

    def partial(self) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """(metrics, points, client_health) of what has been measured so far."""
        metrics: dict[str, Any] = {"dataset": {
            "source": self.data.source, "n": len(self.data.train), "dim": self.data.dim,
            "queries": len(self.data.queries), "k": self.cfg.k, "metric": self.cfg.metric}}
        if self.ingest_result is not None:
            metrics["ingest"] = self.ingest_result
        if self.serial_result is not None:
            metrics["serial"] = self.serial_result
        health = {"max_client_cpu_percent": max((p["client_cpu_percent"] for p in self.points), default=0.0)}
        return metrics, list(self.points), health

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)
