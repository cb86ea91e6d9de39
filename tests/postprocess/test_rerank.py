"""The sparse k-reciprocal re-ranking gives the dense oracle's top-k lists."""

from __future__ import annotations

import numpy as np
import pytest

from clothes_retrieval.postprocess import (
    rerank_dense,
    rerank_sparse,
    topk_from_distance,
)


def clustered(rng, n, d, n_clusters, spread):
    centres = rng.normal(size=(n_clusters, d))
    x = centres[rng.integers(0, n_clusters, n)] + spread * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def assert_same_topk(dense, ours, atol):
    """Same top-k lists allowing for ties: the distances at every rank agree with the
    dense ranking's, and each gallery item we return has, in the dense matrix, the
    distance we report (so a different item at some rank can only be a tied one)."""
    k = ours.indices.shape[1]
    ref = topk_from_distance(dense, k)
    assert ours.indices.shape == ref.indices.shape
    np.testing.assert_allclose(ours.distances, ref.distances, atol=atol, rtol=0)
    np.testing.assert_allclose(
        np.take_along_axis(dense, ours.indices, axis=1), ours.distances, atol=atol, rtol=0
    )
    assert all(len(set(row)) == k for row in ours.indices)  # no repeated gallery item


@pytest.mark.parametrize(
    ("nq", "ng", "d", "k1", "k2", "lam", "topk"),
    [
        (30, 120, 16, 20, 6, 0.3, 50),
        (50, 300, 8, 10, 3, 0.5, 100),
        (40, 200, 32, 5, 1, 0.0, 20),  # λ = 0: many ties at Jaccard distance 1
        (20, 150, 4, 7, 2, 1.0, 30),  # λ = 1: the original ranking
        (3, 10, 8, 20, 6, 0.3, 10),  # N < k1 + 1: lists cut at N, topk = G
    ],
)
def test_sparse_matches_dense_float32(nq, ng, d, k1, k2, lam, topk):
    rng = np.random.default_rng(nq * 1000 + ng)
    x = clustered(rng, nq + ng, d, n_clusters=8, spread=0.5)
    q, g = x[:nq], x[nq:]
    dense = rerank_dense(q, g, k1, k2, lam, v_dtype=np.float32)
    ours = rerank_sparse(q, g, k1, k2, lam, topk=topk)
    assert ours.indices.shape == (nq, min(topk, ng))
    assert_same_topk(dense, ours, atol=1e-5)


def test_sparse_matches_dense_float16_oracle_and_reranking_matters():
    rng = np.random.default_rng(7)
    x = clustered(rng, 60 + 340, 16, n_clusters=12, spread=0.6)
    q, g = x[:60], x[60:]
    dense = rerank_dense(q, g, 20, 6, 0.3)  # float16 V, as the widely used code
    ref = topk_from_distance(dense, 10)
    ours = rerank_sparse(q, g, 20, 6, 0.3, topk=10)
    # float16 rounding of V: distances agree to ~1e-3, lists to the same tolerance
    assert_same_topk(dense, ours, atol=3e-3)
    assert (
        np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref.indices, ours.indices, strict=True)])
        > 0.95
    )
    original = topk_from_distance(2 - 2 * q @ g.T, 10)
    assert np.mean(original.indices != ref.indices) > 0.3  # re-ranking changed the order


def test_lambda_one_is_the_normalised_original_distance():
    rng = np.random.default_rng(3)
    x = clustered(rng, 50, 8, 4, 0.5)
    q, g = x[:10], x[10:]
    dense = rerank_dense(q, g, 5, 2, 1.0, v_dtype=np.float32)
    d = 2 - 2 * x @ x.T
    expected = (d / d.max(axis=1, keepdims=True))[:10, 10:]
    np.testing.assert_allclose(dense, expected, atol=1e-5)


def test_topk_from_distance_breaks_ties_by_index():
    dist = np.array([[0.5, 0.1, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0]])
    r = topk_from_distance(dist, 3)
    assert r.indices.tolist() == [[3, 1, 0], [0, 1, 2]]
    assert topk_from_distance(dist, 10).indices.shape == (2, 4)


def test_invalid_inputs():
    rng = np.random.default_rng(0)
    x = clustered(rng, 20, 4, 2, 0.3)
    with pytest.raises(ValueError, match="L2-normalised"):
        rerank_sparse(x[:5] * 2, x[5:])
    with pytest.raises(ValueError, match="lambda_value"):
        rerank_sparse(x[:5], x[5:], lambda_value=1.5)
    with pytest.raises(ValueError, match="k1 and k2"):
        rerank_sparse(x[:5], x[5:], k1=0)
    with pytest.raises(ValueError, match="dim"):
        rerank_sparse(x[:5], x[5:, :3] / np.linalg.norm(x[5:, :3], axis=1, keepdims=True))


def test_sparse_matches_dense_on_unclustered_data():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(250, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q, g = x[:50], x[50:]
    dense = rerank_dense(q, g, 10, 4, 0.3, v_dtype=np.float32)
    assert_same_topk(dense, rerank_sparse(q, g, 10, 4, 0.3, topk=40), atol=1e-5)
