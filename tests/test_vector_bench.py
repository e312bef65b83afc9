"""The vector benchmark's parts: statistics, data and ground truth, result files, and the command."""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from benchctl.app import App
from benchctl.bench.results import RunWriter, git_sha
from benchctl.bench.stats import percentile, summarize
from benchctl.bench.vector.data import DataError, exact_neighbors, load, recall_at_k, synthetic


def test_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(1)
    values = rng.exponential(5.0, size=1001).tolist()
    summary = summarize(values)
    for pct in (50, 90, 95, 99, 99.9):
        assert math.isclose(summary[f"p{pct:g}"], float(np.percentile(values, pct)), rel_tol=1e-12)
    assert math.isclose(summary["mean"], float(np.mean(values)))
    assert math.isclose(summary["std"], float(np.std(values)))
    assert summarize([]) == {"count": 0}
    assert math.isnan(percentile([], 50))


def test_synthetic_data_is_seeded() -> None:
    a_train, a_q = synthetic(500, 16, 4, 20, seed=7)
    b_train, b_q = synthetic(500, 16, 4, 20, seed=7)
    c_train, _ = synthetic(500, 16, 4, 20, seed=8)
    assert a_train.dtype == np.float32 and a_train.shape == (500, 16) and a_q.shape == (20, 16)
    assert np.array_equal(a_train, b_train) and np.array_equal(a_q, b_q)
    assert not np.array_equal(a_train, c_train)


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_exact_neighbors_against_naive_search(metric: str) -> None:
    train, queries = synthetic(300, 8, 3, 25, seed=3)
    got = exact_neighbors(train, queries, 5, metric, block=7)  # several blocks
    for qi, q in enumerate(queries):
        if metric == "l2":
            score = [float(np.sum((x - q) ** 2)) for x in train]
        elif metric == "cosine":
            score = [-float(np.dot(x, q) / np.linalg.norm(x) / np.linalg.norm(q)) for x in train]
        else:
            score = [-float(np.dot(x, q)) for x in train]
        assert got[qi].tolist() == sorted(range(len(train)), key=lambda i: score[i])[:5]


def test_recall_at_k() -> None:
    truth = np.array([1, 2, 3, 4], dtype=np.int64)
    assert recall_at_k([1, 2, 9, 8], truth, 4) == 0.5
    assert recall_at_k([4, 3, 2, 1], truth, 4) == 1.0  # order does not matter
    assert recall_at_k([1, 2, 3], truth, 2) == 1.0


def test_load_npy_and_fvecs_hold_out_queries(tmp_path: Path) -> None:
    data = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "v.npy", data)
    with (tmp_path / "v.fvecs").open("wb") as fh:
        for row in data:
            fh.write(struct.pack("<i", 3) + row.astype("<f4").tobytes())
    for name in ("v.npy", "v.fvecs"):
        ds = load(tmp_path / name, n_queries=5, k=3, metric="l2", seed=0)
        assert ds.train.shape == (15, 3) and ds.queries.shape == (5, 3)
        rows = {tuple(r) for r in ds.train.tolist()} | {tuple(r) for r in ds.queries.tolist()}
        assert rows == {tuple(r) for r in data.tolist()}  # a split, nothing lost or invented
        assert ds.neighbors.shape == (5, 3)


def test_bad_data_files_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("1 2 3")
    (tmp_path / "bad.fvecs").write_bytes(struct.pack("<i", 7) + b"\0" * 12)
    np.save(tmp_path / "small.npy", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(DataError, match="unknown format"):
        load(tmp_path / "x.txt", 5, 3, "l2", 0)
    with pytest.raises(DataError, match=r"not an \.fvecs file"):
        load(tmp_path / "bad.fvecs", 5, 3, "l2", 0)
    with pytest.raises(DataError, match="more than 5 rows"):
        load(tmp_path / "small.npy", 5, 3, "l2", 0)
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "missing.npy", 5, 3, "l2", 0)


def test_run_writer_files(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path, "vector", "chroma")
    writer.request({"phase": "serial", "query": 0, "latency_ms": 1.5})
    writer.request({"phase": "serial", "query": 1, "latency_ms": 2.5})
    points = [{"concurrency": 1, "qps": 100.0, "latency_ms": {"p50": 1.0}},
              {"concurrency": 4, "qps": 300.0, "latency_ms": {"p50": 2.0}}]
    env = writer.envelope(service={"name": "chroma", "job_id": "12"}, config={"n": 10}, metrics={"x": 1},
                          points=points, client_health={}, errors={"HTTP 500": 2})
    out = tmp_path / "copy" / "run.json"
    path = writer.finish(env, extra_output=out)
    run = json.loads(path.read_text())
    assert run["schema_version"] == 2 and run["kind"] == "vector" and run["service"]["job_id"] == "12"
    assert run["error_counts"] == {"HTTP 500": 2} and run["run_id"] == writer.run_id
    assert json.loads(out.read_text()) == run
    lines = (writer.dir / "requests.jsonl").read_text().splitlines()
    assert [json.loads(x)["query"] for x in lines] == [0, 1]
    rows = list(csv.DictReader((writer.dir / "summary.csv").open()))
    assert [r["concurrency"] for r in rows] == ["1", "4"] and rows[1]["latency_ms.p50"] == "2.0"
    index = [json.loads(x) for x in (tmp_path / "results" / "index.jsonl").read_text().splitlines()]
    assert index[-1]["run_id"] == writer.run_id and index[-1]["service"] == "chroma"


def test_git_sha_reads_the_checkout() -> None:
    sha = git_sha()
    assert sha == "" or len(sha) == 40


def test_bench_command_errors(app: App) -> None:
    assert not app.run_line("bench chroma")
    assert "no chroma job tracked" in app.out.getvalue()  # type: ignore[attr-defined]
    assert not app.run_line("bench vector --url http://127.0.0.1:9")
    assert "needs --url URL and --store" in app.out.getvalue()  # type: ignore[attr-defined]
    assert not app.run_line("bench vector --url http://127.0.0.1:9 --store chroma --concurrency 1,x")
    assert "--concurrency expects numbers" in app.out.getvalue()  # type: ignore[attr-defined]
    assert not app.run_line("bench nosuch")
    assert "unknown service 'nosuch'" in app.out.getvalue()  # type: ignore[attr-defined]
    assert not app.run_line("bench vector --url http://127.0.0.1:9 --store chroma --n 50 --queries 5 --dim 4")
    assert "bench chroma:" in app.out.getvalue()  # type: ignore[attr-defined]  # connection refused, one line


def test_load_ann_benchmarks_hdf5(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    train, queries = synthetic(400, 8, 4, 12, seed=5)
    given = exact_neighbors(train, queries, 20)
    with h5py.File(tmp_path / "ds.hdf5", "w") as fh:
        fh["train"], fh["test"], fh["neighbors"] = train, queries, given
    ds = load(tmp_path / "ds.hdf5", n_queries=10, k=10, metric="l2", seed=0)
    assert ds.train.shape == (400, 8) and ds.queries.shape == (10, 8)
    assert "ground truth from file" in ds.source and np.array_equal(ds.neighbors, given[:10])
    # A truncated train set invalidates the file's ground truth: it is recomputed.
    small = load(tmp_path / "ds.hdf5", n_queries=10, k=10, metric="l2", seed=0, limit=100)
    assert small.train.shape == (100, 8) and "from file" not in small.source
    assert np.array_equal(small.neighbors, exact_neighbors(train[:100], queries[:10], 10))
    with h5py.File(tmp_path / "bad.hdf5", "w") as fh:
        fh["vectors"] = train
    with pytest.raises(DataError, match="no 'train' dataset"):
        load(tmp_path / "bad.hdf5", 10, 10, "l2", 0)
