"""α-QE and DBA against small hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from clothes_retrieval.postprocess import (
    alpha_query_expansion,
    database_side_augmentation,
    knn_inner_product,
)


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


GALLERY = unit([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])


def test_alpha_qe_hand_case():
    q = unit([[0.6, 0.8]])
    # nearest two: [0.8, 0.6] (s = 0.96) and [0, 1] (s = 0.8)
    out = alpha_query_expansion(q, GALLERY, k=2, alpha=3.0)
    expected = unit(q[0] + 0.96**3 * GALLERY[1] + 0.8**3 * GALLERY[2])
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def test_alpha_zero_is_average_qe_and_negative_similarity_gets_no_weight():
    q = unit([[1.0, 0.0]])
    out = alpha_query_expansion(q, GALLERY, k=2, alpha=0.0)
    np.testing.assert_allclose(out[0], unit(q[0] + GALLERY[0] + GALLERY[1]), atol=1e-6)
    # all four neighbours: [-1, 0] has s = -1 and is ignored, [0, 1] has s = 0 (0^1 = 0)
    out = alpha_query_expansion(q, GALLERY, k=4, alpha=1.0)
    np.testing.assert_allclose(out[0], unit(q[0] + GALLERY[0] + 0.8 * GALLERY[1]), atol=1e-6)


def test_dba_excludes_self_and_matches_a_loop():
    rng = np.random.default_rng(0)
    g = unit(rng.normal(size=(30, 4)))
    out = database_side_augmentation(g, k=3, alpha=2.0)
    s = g.astype(np.float64) @ g.T.astype(np.float64)
    for i in range(len(g)):
        others = [j for j in np.argsort(-s[i]) if j != i][:3]
        expected = g[i] + sum(max(s[i, j], 0) ** 2 * g[j] for j in others)
        np.testing.assert_allclose(out[i], unit(expected), atol=1e-5)


def test_knn_matches_brute_force_allowing_ties():
    rng = np.random.default_rng(1)
    base, q = unit(rng.normal(size=(50, 8))), unit(rng.normal(size=(7, 8)))
    sims, idx = knn_inner_product(base, q, 5)
    expected = np.sort(q @ base.T, axis=1)[:, ::-1][:, :5]
    np.testing.assert_allclose(sims, expected, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(q @ base.T, idx, axis=1), sims, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="L2-normalised"):
        alpha_query_expansion(GALLERY * 2, GALLERY, k=1)
    with pytest.raises(ValueError, match="k must be"):
        alpha_query_expansion(GALLERY, GALLERY, k=5)
    with pytest.raises(ValueError, match="k must be"):
        database_side_augmentation(GALLERY, k=4)
    with pytest.raises(ValueError, match="alpha"):
        database_side_augmentation(GALLERY, k=1, alpha=-1)
