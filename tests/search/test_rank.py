"""rank_gallery wires each post-processing step in: its ranking equals a plain reference
computed here, differs from nearest neighbour on this data (so a step that did nothing
would fail), and whitening is fitted on the training vectors, never the gallery."""

import numpy as np
import pytest

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.index import l2_normalize
from clothes_retrieval.postprocess import rerank_dense
from clothes_retrieval.search import PostprocessConfig, rank_gallery


def _data(seed: int = 0, n_id: int = 30, d: int = 16, noise: float = 0.3):
    """Each identity: one gallery vector and one noisy query near it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_id, d))
    gallery = l2_normalize(centres + 0.05 * rng.normal(size=centres.shape))
    queries = l2_normalize(centres + noise * rng.normal(size=centres.shape))
    return queries, gallery


def _nuisance(seed: int, n_id: int, n_nuisance: int = 8, d: int = 32):
    """Identities live in the first ``d - n_nuisance`` dimensions; every vector also gets
    a large random offset along the last ``n_nuisance`` ones (a nuisance shared by the
    training split). Returns queries, gallery and training (vectors, consumer/shop pairs)."""
    rng = np.random.default_rng(seed)
    signal = d - n_nuisance

    def views(centres: np.ndarray, noise: float) -> np.ndarray:
        x = np.zeros((len(centres), d))
        x[:, :signal] = centres + noise * rng.normal(size=centres.shape)
        x[:, signal:] = 5.0 * rng.normal(size=(len(centres), n_nuisance))
        return l2_normalize(x.astype(np.float32))

    centres = rng.normal(size=(n_id, signal))
    queries, gallery = views(centres, 0.3), views(centres, 0.1)
    train_centres = rng.normal(size=(400, signal))
    vectors = np.vstack([views(train_centres, 0.3), views(train_centres, 0.1)])
    pairs = np.stack([np.arange(400), 400 + np.arange(400)], axis=1)
    return queries, gallery, (vectors, pairs)


def _acc1(idx: np.ndarray) -> float:
    return float(np.mean(idx[:, 0] == np.arange(len(idx))))


def _brute(q: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    """Rank by inner product with plain loops (no faiss)."""
    out = np.empty((len(q), k), np.int64)
    for i, qi in enumerate(q):
        sims = [float(qi @ gj) for gj in g]
        out[i] = sorted(range(len(g)), key=lambda j: (-sims[j], j))[:k]
    return out


def _expand(x: np.ndarray, base: np.ndarray, k: int, alpha: float, skip_self: bool):
    """x_i + sum over its k nearest base rows of max(s, 0)^alpha * row, normalised."""
    out = []
    for i, xi in enumerate(x):
        sims = base @ xi
        order = [j for j in np.argsort(-sims, kind="stable") if not (skip_self and j == i)]
        y = xi.astype(np.float64).copy()
        for j in order[:k]:
            y += max(float(sims[j]), 0.0) ** alpha * base[j]
        out.append(y / np.linalg.norm(y))
    return np.asarray(out, np.float32)


def test_plain_search_equals_bruteforce():
    q, g = _data(1)
    idx, scores = rank_gallery(q, g, k=3)
    np.testing.assert_array_equal(idx, _brute(q, g, 3))
    np.testing.assert_allclose(scores, np.take_along_axis(q @ g.T, idx, axis=1), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_query_expansion_ranks_by_the_expanded_queries():
    q, g = _data(5, n_id=40, d=8, noise=0.6)
    cfg = validate_config(PostprocessConfig, {"query_expansion": {"enabled": True, "k": 2}})
    idx, _ = rank_gallery(q, g, cfg, k=5)
    expected = _brute(_expand(q, g, 2, 3.0, skip_self=False), g, 5)
    np.testing.assert_array_equal(idx, expected)
    assert (idx != _brute(q, g, 5)).any()  # the step changed the ranking


def test_dba_ranks_against_the_augmented_gallery():
    q, g = _data(6, n_id=40, d=8, noise=0.6)
    cfg = validate_config(PostprocessConfig, {"dba": {"enabled": True, "k": 2}})
    idx, _ = rank_gallery(q, g, cfg, k=5)
    expected = _brute(q, _expand(g, g, 2, 3.0, skip_self=True), 5)
    np.testing.assert_array_equal(idx, expected)
    assert (idx != _brute(q, g, 5)).any()


def test_rerank_returns_the_dense_k_reciprocal_ranking():
    q, g = _data(7, n_id=40, d=8, noise=0.6)
    cfg = validate_config(
        PostprocessConfig, {"rerank": {"enabled": True, "k1": 5, "k2": 2, "lambda_value": 0.3}}
    )
    idx, scores = rank_gallery(q, g, cfg, k=5)
    dense = rerank_dense(q, g, 5, 2, 0.3, v_dtype=np.float32)
    # scores are the negated re-ranked distances of the items returned, the 5 smallest
    np.testing.assert_allclose(-scores, np.take_along_axis(dense, idx, axis=1), atol=1e-5)
    np.testing.assert_allclose(-scores, np.sort(dense, axis=1)[:, :5], atol=1e-5)
    assert (idx != _brute(q, g, 5)).any()


@pytest.mark.parametrize("mode", ["pca", "learned"])
def test_whitening_fitted_on_training_vectors_removes_a_shared_nuisance(mode):
    # 20 gallery vectors in 32 dimensions: a fit on the gallery itself is rank-deficient
    q, g, training = _nuisance(8, n_id=20)
    plain, _ = rank_gallery(q, g, k=5)
    cfg = validate_config(PostprocessConfig, {"whitening": {"mode": mode}})
    idx, scores = rank_gallery(q, g, cfg, k=5, training=training)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    # nearest neighbour drowns in the nuisance; whitening learnt on training data does not
    assert _acc1(plain) < 0.5
    assert _acc1(idx) > _acc1(plain) + 0.3, (_acc1(plain), _acc1(idx))


def test_pca_whitening_is_fitted_on_the_training_vectors_not_the_gallery():
    q, g, training = _nuisance(9, n_id=20)
    cfg = validate_config(PostprocessConfig, {"whitening": {"mode": "pca", "dim": 20}})
    idx, _ = rank_gallery(q, g, cfg, k=5, training=training)
    # the same ranking as whitening fitted on the training vectors by hand
    x = training[0].astype(np.float64)
    mean = x.mean(axis=0)
    val, vec = np.linalg.eigh(np.cov((x - mean).T, bias=True))
    top = np.argsort(val)[::-1][:20]
    proj = vec[:, top] / np.sqrt(val[top] + 1e-9)

    def whiten(v: np.ndarray) -> np.ndarray:
        return l2_normalize(((v - mean) @ proj).astype(np.float32))

    np.testing.assert_array_equal(idx, _brute(whiten(q), whiten(g), 5))


def test_whitening_refuses_without_training_vectors_or_with_too_few():
    q, g, (vectors, pairs) = _nuisance(10, n_id=20)
    cfg = validate_config(PostprocessConfig, {"whitening": {"mode": "pca"}})
    with pytest.raises(ValueError, match="training-split embeddings"):
        rank_gallery(q, g, cfg)
    # 20 vectors span at most 19 of the 32 dimensions: refused, naming what to do
    with pytest.raises(ValueError, match=r"20 samples.*whitening.dim.*allow_rank_deficient"):
        rank_gallery(q, g, cfg, training=(vectors[:20], pairs[:0]))
    asked = validate_config(
        PostprocessConfig, {"whitening": {"mode": "pca", "allow_rank_deficient": True}}
    )
    idx, _ = rank_gallery(q, g, asked, k=3, training=(vectors[:20], pairs[:0]))
    assert idx.shape == (20, 3)
    with pytest.raises(ValueError, match="same models"):
        rank_gallery(q, g, cfg, training=(vectors[:, :16], pairs))


def test_small_gallery_pads_with_minus_one():
    q, g = _data(2, n_id=3)
    idx, _ = rank_gallery(q, g, k=5)
    assert (idx[:, 3:] == -1).all() and (idx[:, :3] >= 0).all()


def test_labels_and_bad_keys():
    assert PostprocessConfig().label() == "nearest neighbour"
    cfg = validate_config(
        PostprocessConfig, {"dba": {"enabled": True}, "rerank": {"enabled": True}}
    )
    assert cfg.steps() == ("dba", "rerank")
    with pytest.raises(ConfigError, match="rerank.k3"):
        validate_config(PostprocessConfig, {"rerank": {"k3": 1}})
