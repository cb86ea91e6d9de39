"""Whitening against small hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from clothes_retrieval.postprocess import Whitening, fit_learned_whitening, fit_pca_whitening


@pytest.fixture
def x() -> np.ndarray:
    rng = np.random.default_rng(0)
    # correlated 5-d data with very different variances per direction
    mix = rng.normal(size=(5, 5)) * np.array([3.0, 1.0, 0.5, 0.2, 0.1])[:, None]
    return rng.normal(size=(400, 5)) @ mix + rng.normal(size=5)


def test_pca_whitened_training_data_has_identity_covariance(x):
    w = fit_pca_whitening(x, eps=0.0)
    y = w.apply(x, normalize=False).astype(np.float64)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(y.T @ y / len(y), np.eye(5), atol=1e-5)


def test_pca_dimensions_are_ordered_by_variance(x):
    w = fit_pca_whitening(x, eps=0.0)
    cov = np.cov(x.T, bias=True)
    # unwhitened variance along each projection row = its eigenvalue, decreasing
    scales = 1 / np.linalg.norm(w.projection, axis=1) ** 2
    variances = [r @ cov @ r / (r @ r) for r in w.projection]
    np.testing.assert_allclose(variances, scales, rtol=1e-6)
    assert np.all(np.diff(scales) <= 0)


def test_pca_on_a_hand_case():
    # points on the x axis (variance 1) and y axis (variance 4): P = diag(1/2, 1) swapped
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    w = fit_pca_whitening(x, eps=0.0)
    np.testing.assert_allclose(np.abs(w.projection), [[0, 1 / np.sqrt(2)], [1 / np.sqrt(0.5), 0]])
    np.testing.assert_allclose(w.mean, [0, 0])


def test_apply_reduces_dimension_and_normalises(x, tmp_path):
    w = fit_pca_whitening(x, dim=3)
    y = w.apply(x)
    assert y.shape == (400, 3) and y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    assert w.apply(x, dim=2).shape == (400, 2)
    back = Whitening.load(w.save(tmp_path / "w.npz"))
    np.testing.assert_array_equal(back.projection, w.projection)
    with pytest.raises(ValueError, match="dim must be"):
        w.apply(x, dim=4)
    with pytest.raises(ValueError, match="fitted on another dimension"):
        w.apply(x[:, :4])


def test_learned_whitening_whitens_pair_differences(x):
    rng = np.random.default_rng(1)
    q = np.arange(200)
    partner = x[q] + 0.1 * rng.normal(size=(200, 5)) @ np.diag([1, 2, 3, 4, 5])
    data = np.vstack([x[:200], partner])
    pairs = np.stack([q, q + 200], axis=1)
    w = fit_learned_whitening(data, pairs, eps=0.0)
    diff = data[pairs[:, 0]] - data[pairs[:, 1]]
    s = diff.T @ diff / len(diff)
    # P S P^T = I: the intra-pair variation is whitened
    np.testing.assert_allclose(w.projection @ s @ w.projection.T, np.eye(5), atol=1e-8)
    # then PCA of the rotated data: uncorrelated dimensions with decreasing spread
    y = (data - w.mean) @ w.projection.T
    m = y.T @ y
    np.testing.assert_allclose(m - np.diag(np.diag(m)), 0, atol=1e-6 * np.abs(m).max())
    assert np.all(np.diff(np.diag(m)) <= 0)
    np.testing.assert_allclose(w.mean, data[q].mean(axis=0))


def test_learned_whitening_rejects_bad_pairs(x):
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        fit_learned_whitening(x, np.arange(4))
    with pytest.raises(ValueError, match="row indices"):
        fit_learned_whitening(x, np.array([[0, 400]]))
    with pytest.raises(ValueError, match="not positive definite"):
        fit_learned_whitening(x, np.array([[0, 1], [2, 3]]), eps=0.0)
