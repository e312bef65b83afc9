"""Data for the vector benchmark: seeded synthetic clusters or a user file, and exact ground truth.

Files: ``.npy`` (vectors; queries are held out from it), ``.fvecs`` (the same, TEXMEX layout) or ``.hdf5``
in the ann-benchmarks layout (``train``, ``test``, ``neighbors``; needs h5py), whose ground truth is used
as given. Otherwise ground truth is computed exactly with numpy (brute force, in blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]


class DataError(ValueError):
    """The data file is unusable (message says why)."""


@dataclass
class Dataset:
    train: Array
    queries: Array
    neighbors: npt.NDArray[np.int64]  # (n_queries, >=k) exact nearest train rows, nearest first
    source: str

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def synthetic(n: int, dim: int, clusters: int, n_queries: int, seed: int) -> tuple[Array, Array]:
    """Clustered Gaussian data (ANN indexes behave on it as on real embeddings, unlike uniform noise)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 1.0, size=(max(1, clusters), dim)).astype(np.float32)
    spread = np.float32(0.35)

    def sample(count: int) -> Array:
        which = rng.integers(0, len(centers), size=count)
        points: Array = (centers[which] + rng.normal(0.0, 1.0, size=(count, dim)).astype(np.float32) * spread)
        return points.astype(np.float32)

    return sample(n), sample(n_queries)


def exact_neighbors(train: Array, queries: Array, k: int, metric: str = "l2",
                    block: int = 256) -> npt.NDArray[np.int64]:
    """Exact k nearest train rows for each query (l2, cosine or inner product), nearest first."""
    k = min(k, len(train))
    if metric == "cosine":
        train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    train_sq = np.einsum("ij,ij->i", train, train) if metric == "l2" else None
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), block):
        q = queries[start:start + block]
        dots = q @ train.T
        # Smaller is nearer: l2 distance (without the constant |q|^2) or negative similarity.
        dist = train_sq[None, :] - 2 * dots if train_sq is not None else -dots
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(dist, part, axis=1).argsort(axis=1)
        out[start:start + block] = np.take_along_axis(part, order, axis=1)
    return out


def _read_fvecs(path: Path) -> Array:
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        raise DataError(f"{path}: empty file")
    dim = int(raw[0])
    if dim <= 0 or raw.size % (dim + 1):
        raise DataError(f"{path}: not an .fvecs file (bad dimension header {dim})")
    vectors: Array = raw.reshape(-1, dim + 1)[:, 1:].view(np.float32).copy()
    return vectors


def load(path: Path, n_queries: int, k: int, metric: str, seed: int, limit: int = 0) -> Dataset:
    """A dataset from a file; ``limit`` keeps the first rows of train (0 = all)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".hdf5", ".h5"):
        try:
            import h5py
        except ImportError:
            raise DataError("reading .hdf5 needs h5py (pip install h5py)") from None
        with h5py.File(path, "r") as fh:
            for key in ("train", "test"):
                if key not in fh:
                    raise DataError(f"{path}: no '{key}' dataset (ann-benchmarks layout expected)")
            train = np.asarray(fh["train"], dtype=np.float32)
            queries = np.asarray(fh["test"], dtype=np.float32)[:n_queries]
            given = np.asarray(fh["neighbors"], dtype=np.int64)[:n_queries] if "neighbors" in fh else None
        if limit and limit < len(train):
            train, given = train[:limit], None  # truncated train: the file's ground truth no longer holds
        if given is not None and given.shape[1] >= k:
            return Dataset(train, queries, given, f"{path} (ground truth from file)")
        return Dataset(train, queries, exact_neighbors(train, queries, k, metric), str(path))
    if suffix == ".npy":
        data = np.load(path).astype(np.float32)
    elif suffix == ".fvecs":
        data = _read_fvecs(path)
    else:
        raise DataError(f"{path}: unknown format (use .npy, .fvecs or .hdf5)")
    if data.ndim != 2 or len(data) <= n_queries:
        raise DataError(f"{path}: need a 2-D array with more than {n_queries} rows, got shape {data.shape}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    queries, train = data[order[:n_queries]], data[order[n_queries:]]
    if limit:
        train = train[:limit]
    return Dataset(train, queries, exact_neighbors(train, queries, k, metric), str(path))


def recall_at_k(found: list[int], truth: npt.NDArray[np.int64], k: int) -> float:
    """|found[:k] ∩ truth[:k]| / k."""
    if k <= 0:
        return 0.0
    return len(set(found[:k]) & {int(x) for x in truth[:k]}) / k
