#!/usr/bin/env python3
"""Compare benchctl's vector client with the official ``chromadb.HttpClient`` doing the same work.

    .venv/bin/python scripts/bench_vector_client.py [--n 20000] [--dim 128] [--seconds 5]

Starts a real ``chroma run`` on a free loopback port, then for each client: ingest the same vectors in
batches of 500 (vectors/s), serial queries for N seconds (QPS), and 4 threads for N seconds (QPS).
Prints both side by side with the ratio benchctl / official. Client and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable

import numpy as np

from benchctl.bench.vector.data import synthetic
from benchctl.bench.vector.stores import ChromaStore, IndexParams


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_chroma(path: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    chroma = shutil.which("chroma", path=os.path.dirname(sys.executable)) or "chroma"
    proc = subprocess.Popen([chroma, "run", "--host", "127.0.0.1", "--port", str(port), "--path", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("chroma did not start")


def timed_loop(fn: Callable[[int], None], seconds: float, threads: int) -> float:
    """Run ``fn(i)`` in ``threads`` threads for ``seconds``; returns calls per second."""
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(w: int) -> None:
        i = w
        while time.perf_counter() < stop:
            fn(i)
            counts[w] += 1
            i += threads

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def run_benchctl(port: int, train: np.ndarray, queries: np.ndarray, seconds: float) -> dict[str, float]:
    store = ChromaStore(f"http://127.0.0.1:{port}")
    s = store.session()
    store.create(s, "cmp_benchctl", train.shape[1], IndexParams())
    t0 = time.perf_counter()
    for lo in range(0, len(train), 500):
        store.insert(s, "cmp_benchctl", range(lo, lo + len(train[lo:lo + 500])), train[lo:lo + 500])
    ingest = len(train) / (time.perf_counter() - t0)
    local = threading.local()

    def query(i: int) -> None:
        if not hasattr(local, "s"):
            local.s = store.session()
        store.search(local.s, "cmp_benchctl", queries[i % len(queries)], 10)

    serial = timed_loop(query, seconds, 1)
    parallel = timed_loop(query, seconds, 4)
    store.drop(s, "cmp_benchctl")
    return {"ingest vectors/s": ingest, "serial QPS": serial, "4-thread QPS": parallel}


def run_official(port: int, train: np.ndarray, queries: np.ndarray, seconds: float) -> dict[str, float]:
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    coll = client.get_or_create_collection("cmp_official", embedding_function=None,
                                           configuration={"hnsw": {"space": "l2", "ef_construction": 100,
                                                                   "max_neighbors": 16, "ef_search": 100}})
    t0 = time.perf_counter()
    for lo in range(0, len(train), 500):
        chunk = train[lo:lo + 500]
        coll.add(ids=[str(i) for i in range(lo, lo + len(chunk))], embeddings=chunk)
    ingest = len(train) / (time.perf_counter() - t0)

    def query(i: int) -> None:
        coll.query(query_embeddings=queries[i % len(queries)][None, :], n_results=10, include=["distances"])

    serial = timed_loop(query, seconds, 1)
    parallel = timed_loop(query, seconds, 4)
    client.delete_collection("cmp_official")
    return {"ingest vectors/s": ingest, "serial QPS": serial, "4-thread QPS": parallel}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    train, queries = synthetic(args.n, args.dim, 16, 200, seed=42)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_chroma(tmp)
        try:
            ours = run_benchctl(port, train, queries, args.seconds)
            theirs = run_official(port, train, queries, args.seconds)
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"n={args.n} dim={args.dim}, {args.seconds:g} s per query phase, chroma on 127.0.0.1:{port}")
    print(f"{'':18}{'benchctl':>12}{'chromadb':>12}{'ratio':>8}")
    for key in ours:
        print(f"{key:18}{ours[key]:12.0f}{theirs[key]:12.0f}{ours[key] / theirs[key]:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
