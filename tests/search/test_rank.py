import numpy as np
import pytest

from clothes_retrieval.config import ConfigError, validate_config
from clothes_retrieval.index import l2_normalize
from clothes_retrieval.search import PostprocessConfig, rank_gallery


def _data(seed: int = 0, n_id: int = 30):
    """Each identity: one gallery vector and one noisy query near it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_id, 16))
    gallery = l2_normalize(centres + 0.05 * rng.normal(size=centres.shape))
    queries = l2_normalize(centres + 0.3 * rng.normal(size=centres.shape))
    return queries, gallery


def _acc1(idx: np.ndarray) -> float:
    return float(np.mean(idx[:, 0] == np.arange(len(idx))))


@pytest.mark.parametrize(
    "post",
    [
        {},
        {"whitening": {"mode": "pca"}},
        {"dba": {"enabled": True, "k": 2}},
        {"query_expansion": {"enabled": True, "k": 1}},
        {"rerank": {"enabled": True, "k1": 5, "k2": 2}},
    ],
)
def test_each_step_runs_and_keeps_a_sane_ranking(post):
    q, g = _data()
    cfg = validate_config(PostprocessConfig, post)
    idx, scores = rank_gallery(q, g, cfg, k=5)
    assert idx.shape == (30, 5) and scores.shape == (30, 5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    assert _acc1(idx) > 0.8, cfg.label()


def test_plain_search_equals_bruteforce():
    q, g = _data(1)
    idx, scores = rank_gallery(q, g, k=3)
    brute = np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :3]
    np.testing.assert_allclose(scores, np.take_along_axis(q @ g.T, brute, axis=1), atol=1e-5)


def test_small_gallery_pads_with_minus_one():
    q, g = _data(2, n_id=3)
    idx, _ = rank_gallery(q, g, k=5)
    assert (idx[:, 3:] == -1).all() and (idx[:, :3] >= 0).all()


def test_learned_whitening_needs_pairs_and_uses_them():
    q, g = _data(3)
    cfg = validate_config(PostprocessConfig, {"whitening": {"mode": "learned"}})
    with pytest.raises(ValueError, match="train_pairs"):
        rank_gallery(q, g, cfg)
    tq, tg = _data(4, n_id=60)
    idx, _ = rank_gallery(q, g, cfg, k=3, train_pairs=(tq, tg))
    assert idx.shape == (30, 3)


def test_labels_and_bad_keys():
    assert PostprocessConfig().label() == "nearest neighbour"
    cfg = validate_config(
        PostprocessConfig, {"dba": {"enabled": True}, "rerank": {"enabled": True}}
    )
    assert cfg.steps() == ("dba", "rerank")
    with pytest.raises(ConfigError, match="rerank.k3"):
        validate_config(PostprocessConfig, {"rerank": {"k3": 1}})
