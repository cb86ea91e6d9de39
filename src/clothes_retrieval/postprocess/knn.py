"""Exact inner-product k-nearest-neighbour search, the building block of post-processing.

On L2-normalised rows the inner product orders neighbours exactly as the Euclidean
distance does (``|a - b|^2 = 2 - 2 a.b``). faiss ``IndexFlatIP`` (exact, BLAS, all cores)
is used when it is installed, numpy in blocks otherwise; both return every row's
neighbours best first.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["check_normalized", "knn_inner_product", "farthest_inner_product"]

log = logging.getLogger(__name__)

try:  # faiss-cpu / faiss-gpu are optional extras
    import faiss
except ImportError:  # pragma: no cover - depends on the environment
    faiss = None

_BLOCK_ELEMENTS = 1 << 24  # numpy fallback: at most 16M similarities (64 MB) per block


def check_normalized(x: np.ndarray, name: str, *, atol: float = 1e-3) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 (N, D) array; raise if rows are not unit length."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be an (N, D) array of embeddings, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    norms = np.linalg.norm(x, axis=1)
    if len(x) and np.max(np.abs(norms - 1.0)) > atol:
        bad = int(np.argmax(np.abs(norms - 1.0)))
        raise ValueError(
            f"{name} rows must be L2-normalised (row {bad} has norm {norms[bad]:.4f}); "
            "divide each row by its norm first"
        )
    return x


def knn_inner_product(
    base: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``base`` with the largest inner product with each query row.

    Returns ``(similarities, indices)``, both (Q, k), best first. Requires ``k <= len(base)``.
    """
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if not 1 <= k <= len(base):
        raise ValueError(f"k must be in [1, {len(base)}] (the base size), got {k}")
    if faiss is not None:
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        sims, idx = index.search(queries, k)
        return sims, idx.astype(np.int64, copy=False)
    block = max(1, _BLOCK_ELEMENTS // max(1, len(base)))
    sims = np.empty((len(queries), k), dtype=np.float32)
    idx = np.empty((len(queries), k), dtype=np.int64)
    for a in range(0, len(queries), block):
        s = queries[a : a + block] @ base.T  # (B, N)
        part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < len(base) else np.argsort(-s)
        ps = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        idx[a : a + block] = np.take_along_axis(part, order, axis=1)
        sims[a : a + block] = np.take_along_axis(ps, order, axis=1)
    return sims, idx


def farthest_inner_product(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The smallest inner product of each query row with any row of ``base`` (Q,)."""
    sims, _ = knn_inner_product(base, -np.asarray(queries, dtype=np.float32), 1)
    return -sims[:, 0]
