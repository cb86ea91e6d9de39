"""k-reciprocal re-ranking (Zhong, Zheng, Cao & Li, CVPR 2017).

Both functions follow the widely used implementation (``re_ranking(probFea, galFea, k1,
k2, lambda_value)`` of the person re-identification code bases). With ``X`` the
``N = Q + G`` query and gallery rows:

1. ``d(i, j) = |x_i - x_j|^2``, divided by the largest distance of row ``i`` (over all N).
2. ``F_k(i)``: the ``k`` nearest points of ``i`` (itself included, sorted).
   ``R(i)``: the k-reciprocal neighbours, ``j in F_{k1+1}(i)`` with ``i in F_{k1+1}(j)``.
3. Expansion: for each ``j in R(i)``, ``R_h(j)`` is its reciprocal set with
   ``k = round(k1 / 2) + 1`` (numpy's ``around``); if ``|R_h(j) & R(i)| > 2/3 |R_h(j)|``
   it is added. ``E(i)`` = the union.
4. ``V[i, j] = exp(-d(i, j)) / sum_{l in E(i)} exp(-d(i, l))`` for ``j in E(i)``, else 0.
5. Local query expansion: ``V[i] <- mean of V[l]`` for the ``k2`` nearest ``l`` of ``i``.
6. Jaccard distance ``J(i, j) = 1 - t / (2 - t)``, ``t = sum_l min(V[i, l], V[j, l])``.
7. Final distance ``(1 - λ) J(i, j) + λ d(i, j)`` for query ``i``, gallery ``j``.

:func:`rerank_dense` is the plain dense port (N x N distances, argsort, V matrix; about
23 bytes x N^2 of memory) kept as the test oracle. :func:`rerank_sparse` computes the same
top-k lists in memory linear in N: exact k-NN lists (faiss, ``k1 + 1`` neighbours) and a
farthest-point search (the row normaliser of step 1) replace the argsort; R, R_h and E are
sorted index pairs; V is a scipy CSR matrix and step 5 a sparse product; step 6 runs, per
chunk of queries, only over the columns a query shares with gallery rows (the dense
code's inverted index); step 7 ranks the query's nearest gallery items plus every item
sharing a column. The comments in the function explain why nothing outside that
candidate set can enter the top-k.

Features are (N, D) L2-normalised float32 rows (then ``d = 2 - 2 x_i . x_j``).
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from clothes_retrieval.postprocess.knn import (
    check_normalized,
    farthest_inner_product,
    knn_inner_product,
)

__all__ = ["RankedLists", "rerank_dense", "rerank_sparse", "topk_from_distance"]

log = logging.getLogger(__name__)


class RankedLists(NamedTuple):
    """Top-k gallery rows per query, best first, and their (re-ranked) distances."""

    indices: np.ndarray  # (Q, k) int64 gallery row positions
    distances: np.ndarray  # (Q, k) float


def _check_params(k1: int, k2: int, lambda_value: float) -> None:
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")


def topk_from_distance(dist: np.ndarray, k: int) -> RankedLists:
    """The ``k`` smallest entries of each row of a (Q, G) distance matrix, ties by index."""
    dist = np.asarray(dist)
    n_g = dist.shape[1]
    k = min(int(k), n_g)
    if k < n_g:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]  # (Q, k) unordered
    else:
        part = np.broadcast_to(np.arange(n_g), dist.shape)
    d = np.take_along_axis(dist, part, axis=1)
    order = np.lexsort((part, d), axis=-1)  # by distance, then gallery index
    return RankedLists(
        np.take_along_axis(part, order, axis=1).astype(np.int64),
        np.take_along_axis(d, order, axis=1),
    )


# ---------------------------------------------------------------------------------------
# Dense oracle
# ---------------------------------------------------------------------------------------


def rerank_dense(
    query: np.ndarray,
    gallery: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    v_dtype: type[np.floating] = np.float16,
) -> np.ndarray:
    """Final (Q, G) re-ranked distance by the widely used dense algorithm, line for line.

    ``v_dtype`` is the dtype of V and of the Jaccard accumulators: float16 as in the
    original code (and its memory figures); float32 for a tighter oracle in tests.
    """
    _check_params(k1, k2, lambda_value)
    q = np.asarray(query, dtype=np.float32)
    g = np.asarray(gallery, dtype=np.float32)
    query_num = q.shape[0]
    all_num = query_num + g.shape[0]
    feat = np.concatenate([q, g])
    sq = np.sum(feat**2, axis=1, keepdims=True)
    original_dist = feat @ feat.T  # (N, N): |a|^2 + |b|^2 - 2 a.b, built in place
    original_dist *= -2
    original_dist += sq
    original_dist += sq.T
    del feat
    original_dist = np.transpose(original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(v_dtype)
    initial_rank = np.argsort(original_dist).astype(np.int32)

    for i in range(all_num):
        # k-reciprocal neighbours
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            kh = int(np.around(k1 / 2)) + 1
            candidate_forward_k_neigh_index = initial_rank[candidate, :kh]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index, :kh]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2 / 3 * len(
                candidate_k_reciprocal_index
            ):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = weight / np.sum(weight)

    original_dist = original_dist[:query_num,]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=v_dtype)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    invIndex = []
    for i in range(all_num):
        invIndex.append(np.where(V[:, i] != 0)[0])

    jaccard_dist = np.zeros_like(original_dist, dtype=v_dtype)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=v_dtype)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)

    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


# ---------------------------------------------------------------------------------------
# Sparse, scalable version
# ---------------------------------------------------------------------------------------


class _Clock:
    """Wall time of successive stages, for the log."""

    def __init__(self) -> None:
        self.laps: list[tuple[str, float]] = []
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, now - self._last))
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {sec:.1f} s" for name, sec in self.laps)


def _in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Membership of ``keys`` in the sorted array ``sorted_keys``."""
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == len(sorted_keys)] = 0
    return sorted_keys[pos] == keys if len(sorted_keys) else np.zeros(len(keys), bool)


def _ragged_take(indptr: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each g in ``groups``, the positions ``indptr[g] .. indptr[g+1]``, concatenated.

    Returns ``(positions, counts)``; ``np.repeat(x, counts)`` aligns per-group values.
    """
    counts = indptr[groups + 1] - indptr[groups]
    starts = np.repeat(indptr[groups] - np.cumsum(counts) + counts, counts)
    return starts + np.arange(int(counts.sum())), counts


def _reciprocal(nn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` with ``j`` in ``nn[i]`` and ``i`` in ``nn[j]``, sorted by i then j."""
    n, k = nn.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = nn.ravel()
    keys = np.sort(rows * n + cols)
    back = cols * n + rows
    mask = _in_sorted(keys, back)
    order = np.lexsort((cols[mask], rows[mask]))
    return rows[mask][order], cols[mask][order]


def _row_dot(x: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 4096) -> np.ndarray:
    """``x[a[t]] . x[b[t]]`` for every t, in blocks (float64)."""
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), block):
        out[s : s + block] = np.einsum(
            "td,td->t", x[a[s : s + block]], x[b[s : s + block]], dtype=np.float64
        )
    return out


def rerank_sparse(
    query: np.ndarray,
    gallery: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    *,
    topk: int = 100,
    progress: bool = False,
) -> RankedLists:
    """Top-``topk`` gallery rows per query under k-reciprocal re-ranking, in linear memory.

    Gives the same lists as ``topk_from_distance(rerank_dense(...), topk)`` (up to ties and
    float rounding; the dense code keeps V in float16) while touching only k-NN lists and
    sparse matrices. ``query`` (Q, D) and ``gallery`` (G, D) are L2-normalised rows;
    ``topk`` is capped at G. Returned distances are the final re-ranked distances.
    """
    _check_params(k1, k2, lambda_value)
    q = check_normalized(query, "query")
    g = check_normalized(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != gallery dim {g.shape[1]}")
    if len(q) == 0 or len(g) == 0:
        raise ValueError("query and gallery must both be non-empty")
    n_q, n_g = len(q), len(g)
    x = np.concatenate([q, g])  # (N, D)
    n = len(x)
    clock = _Clock()
    topk = min(int(topk), n_g)
    lam = float(lambda_value)

    # -- nearest-neighbour structures (the dense code's initial_rank[:, :K]) --------------
    kf = min(k1 + 1, n)  # forward list for R
    kh = min(int(np.around(k1 / 2)) + 1, n)  # forward list for the expansion sets R_h
    kq = min(k2, n)  # local query expansion
    _, nn = knn_inner_product(x, x, max(kf, kq))  # (N, K) nearest first
    # largest distance of each row over all N points: 2 - 2 * smallest inner product
    max_dist = 2.0 - 2.0 * farthest_inner_product(x, x).astype(np.float64)  # (N,)
    max_dist = np.maximum(max_dist, 1e-12)
    clock.lap("k-NN search")

    # -- R(i), R_h(i) and the expansion E(i), as sorted (i, j) pairs ----------------------
    r_i, r_j = _reciprocal(nn[:, :kf])
    h_i, h_j = _reciprocal(nn[:, :kh])
    h_ptr = np.r_[0, np.cumsum(np.bincount(h_i, minlength=n))]
    r_keys = r_i * n + r_j  # sorted
    # triples (pair p = (i, j) in R, l in R_h(j)): is l in R(i)?
    pos, cnt = _ragged_take(h_ptr, r_j)
    t_i, t_l = np.repeat(r_i, cnt), h_j[pos]
    t_pair = np.repeat(np.arange(len(r_i)), cnt)
    inter = np.bincount(t_pair, weights=_in_sorted(r_keys, t_i * n + t_l), minlength=len(r_i))
    qualifies = inter > 2 / 3 * cnt  # the dense code's test, same float expression
    add = qualifies[t_pair]
    e_keys = np.sort(np.concatenate([r_keys, t_i[add] * n + t_l[add]]))
    e_keys = e_keys[np.r_[True, e_keys[1:] != e_keys[:-1]]]  # unique
    e_i, e_j = e_keys // n, e_keys % n
    del pos, cnt, t_i, t_l, t_pair, add, e_keys
    clock.lap("reciprocal sets")

    # -- V: Gaussian-kernel weights on E(i), rows summing to 1 ----------------------------
    d_e = (2.0 - 2.0 * _row_dot(x, e_i, e_j)) / max_dist[e_i]
    w = np.exp(-d_e)
    w /= np.bincount(e_i, weights=w, minlength=n)[e_i]
    e_ptr = np.r_[0, np.cumsum(np.bincount(e_i, minlength=n))]
    v = sp.csr_matrix((w.astype(np.float32), e_j, e_ptr), shape=(n, n))
    del d_e, w, e_i, e_j
    if k2 != 1:  # V[i] <- mean of V over the k2 nearest of i (sparse averaging)
        avg = sp.csr_matrix(
            (np.full(n * kq, 1.0 / kq, dtype=np.float32), nn[:, :kq].ravel(),
             np.arange(0, n * kq + 1, kq)),
            shape=(n, n),
        )  # fmt: skip
        v = (avg @ v).tocsr()
        del avg
    v.sort_indices()
    v_query = v[:n_q]  # (Q, N)
    v_gallery = v[n_q:].tocsc()  # (G, N) by column: the dense code's inverted index
    del v
    clock.lap("V and local query expansion")

    # N_k: the query's topk nearest gallery items by original distance
    _, g_nn = knn_inner_product(g, q, topk)  # (Q, topk)
    clock.lap("query-gallery search")

    # -- per chunk of queries: Jaccard on the sharing set, final distance on candidates --
    # Why the top-k list is exact: the final distance is f(j) = (1-λ) J(j) + λ d(j) with
    # J in [0, 1], and J(j) = 1 for every gallery item j sharing no non-zero column of V
    # with the query (t = 0; the dense code's inverted-index loop never touches it). Let
    # N_k be the query's k nearest gallery items by d. For any j outside N_k and outside
    # the sharing set S: f(j) = (1-λ) + λ d(j) >= (1-λ) J(n) + λ d(n) = f(n) for every n in
    # N_k, since J(n) <= 1 and d(n) <= d(j). So k items are at least as close as j, and j
    # cannot enter the top-k except through an exact tie. Ranking the candidates N_k ∪ S
    # by f therefore gives the dense top-k. The original distances of a chunk come from
    # one BLAS product (chunk, D) x (D, G), freed after the chunk, so memory stays linear
    # in N.
    # (chunk, G) buffers of <= 2M entries: small enough for malloc to reuse them between
    # chunks (large fresh allocations pay a page fault per 4 kB on every chunk)
    chunk = max(1, min(n_q, (1 << 21) // n_g))
    out_idx = np.empty((n_q, topk), dtype=np.int64)
    out_dist = np.empty((n_q, topk), dtype=np.float64)
    starts = range(0, n_q, chunk)
    for a in tqdm(starts, desc="re-ranking", disable=not progress, unit="chunk"):
        b = min(a + chunk, n_q)
        c = b - a
        # t[r, j] = Σ_l min(V[i, l], V[j, l]) over the columns l query i and gallery j share
        sub = v_query[a:b]
        nz_r = np.repeat(np.arange(c), np.diff(sub.indptr))
        pos, cnt = _ragged_take(v_gallery.indptr, sub.indices)
        key = np.repeat(nz_r * n_g, cnt) + v_gallery.indices[pos]
        mins = np.minimum(np.repeat(sub.data, cnt), v_gallery.data[pos])
        t = np.bincount(key, weights=mins, minlength=c * n_g).reshape(c, n_g)  # (c, G)
        del pos, cnt, key, mins
        sims_c = q[a:b] @ g.T  # (c, G) inner products

        # candidates: N_k (k nearest by original distance, from the k-NN search) and S
        is_cand = t > 0
        is_cand[np.arange(c)[:, None], g_nn[a:b]] = True
        flat = np.flatnonzero(is_cand)  # sorted by (query row, gallery index)
        cand_r, cand_j = flat // n_g, flat % n_g
        t_c = t.ravel()[flat]
        d_c = (2.0 - 2.0 * sims_c.ravel()[flat].astype(np.float64)) / max_dist[a + cand_r]
        f_c = (1 - lam) * (1 - t_c / (2 - t_c)) + lam * d_c  # in [0, 1] up to rounding
        # per query by f, ties by gallery index: one stable sort of row * 4 + f (f < 4)
        order = np.argsort(cand_r * 4.0 + f_c, kind="stable")
        first = np.searchsorted(cand_r, np.arange(c))  # candidates of row r start here
        sel = order[(first[:, None] + np.arange(topk)).ravel()]
        out_idx[a:b] = cand_j[sel].reshape(c, topk)
        out_dist[a:b] = f_c[sel].reshape(c, topk)
    clock.lap("Jaccard and final ranking")
    log.info("k-reciprocal re-ranking of %d queries x %d gallery: %s", n_q, n_g, clock)
    return RankedLists(out_idx, out_dist)
