"""α-query expansion (α-QE) and database-side augmentation (DBA).

α-QE (Radenović, Tolias & Chum, TPAMI 2018): a query ``q`` is replaced by

    q' = normalise(q + sum_{i=1..k} max(s_i, 0)^α g_i)

where ``g_1 .. g_k`` are its k nearest gallery vectors and ``s_i = q . g_i`` their cosine
similarities; the query itself enters with weight ``1 = (q . q)^α``. α = 0 is plain average
query expansion; a large α trusts only the closest neighbours. Negative similarities get
weight 0 (a fractional power of a negative number is undefined).

DBA applies the same formula to every gallery vector against the rest of the gallery
(its own row excluded from the k neighbours, and counted once with weight 1), so that
queries and gallery live in the same smoothed space.

All vectors are (N, D) L2-normalised float32 rows; outputs are too.
"""

from __future__ import annotations

import numpy as np

from clothes_retrieval.postprocess.knn import check_normalized, knn_inner_product

__all__ = ["alpha_query_expansion", "database_side_augmentation"]

_BLOCK = 4096  # rows expanded at a time: bounds the (block, k, D) gather


def _check_k_alpha(k: int, alpha: float, n_base: int) -> None:
    if not 1 <= k <= n_base:
        raise ValueError(f"k must be in [1, {n_base}] (neighbours available), got {k}")
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")


def _expand(
    x: np.ndarray, base: np.ndarray, sims: np.ndarray, idx: np.ndarray, alpha: float
) -> np.ndarray:
    """Rows ``x[i] + sum_j max(sims[i, j], 0)^alpha base[idx[i, j]]``, L2-normalised."""
    out = np.empty_like(x)
    weights = np.power(np.clip(sims, 0.0, None, dtype=np.float32), alpha)  # (N, k)
    for a in range(0, len(x), _BLOCK):
        w = weights[a : a + _BLOCK]
        nb = base[idx[a : a + _BLOCK]]  # (B, k, D)
        y = x[a : a + _BLOCK] + np.einsum("bk,bkd->bd", w, nb)
        out[a : a + _BLOCK] = y / np.linalg.norm(y, axis=1, keepdims=True)
    return out


def alpha_query_expansion(
    queries: np.ndarray, gallery: np.ndarray, k: int, alpha: float = 3.0
) -> np.ndarray:
    """α-QE: each query plus its ``k`` nearest gallery vectors weighted by similarity^α."""
    queries = check_normalized(queries, "queries")
    gallery = check_normalized(gallery, "gallery")
    _check_k_alpha(k, alpha, len(gallery))
    sims, idx = knn_inner_product(gallery, queries, k)  # (Q, k)
    return _expand(queries, gallery, sims, idx, alpha)


def database_side_augmentation(gallery: np.ndarray, k: int, alpha: float = 3.0) -> np.ndarray:
    """DBA: every gallery vector plus its ``k`` nearest other gallery vectors (α-weighted)."""
    gallery = check_normalized(gallery, "gallery")
    _check_k_alpha(k, alpha, len(gallery) - 1)
    sims, idx = knn_inner_product(gallery, gallery, k + 1)  # (G, k + 1), self usually first
    # Drop each row's own index; if duplicates pushed it out of the list, drop the last.
    is_self = idx == np.arange(len(gallery))[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones_like(is_self)
    keep[np.arange(len(gallery)), drop] = False
    sims = sims[keep].reshape(len(gallery), k)
    idx = idx[keep].reshape(len(gallery), k)
    return _expand(gallery, gallery, sims, idx, alpha)
