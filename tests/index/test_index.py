from pathlib import Path

import numpy as np
import pytest

from clothes_retrieval.index import (
    IndexConfig,
    IndexManifest,
    ManifestMismatchError,
    build_index,
    concatenate_embeddings,
    l2_normalize,
    load_index,
)


def _manifest(dims=(8,), **kw) -> IndexManifest:
    base = dict(
        models=tuple(f"m{i}" for i in range(len(dims))),
        dims=tuple(dims),
        box_source="gt",
        data_version="v1",
    )
    base.update(kw)
    return IndexManifest(**base)


def _topk_bruteforce(q: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    sims = q @ g.T
    return np.sort(sims, axis=1)[:, ::-1][:, :k]


def test_concatenation_is_weighted_cosine_average():
    rng = np.random.default_rng(0)
    a1, a2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 6))
    b1, b2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 6))
    w = {"x": 1.0, "y": 2.0}
    ca = concatenate_embeddings({"x": a1, "y": a2}, weights=w)
    cb = concatenate_embeddings({"x": b1, "y": b2}, weights=w)
    assert ca.shape == (5, 10) and ca.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ca, axis=1), 1.0, rtol=1e-5)
    cos1 = np.sum(l2_normalize(a1) * l2_normalize(b1), axis=1)
    cos2 = np.sum(l2_normalize(a2) * l2_normalize(b2), axis=1)
    np.testing.assert_allclose(np.sum(ca * cb, axis=1), (1 * cos1 + 4 * cos2) / 5, rtol=1e-5)


def test_concatenation_errors_name_the_problem():
    with pytest.raises(ValueError, match="different numbers"):
        concatenate_embeddings({"a": np.ones((2, 3)), "b": np.ones((3, 3))})
    with pytest.raises(KeyError, match="no embeddings for models"):
        concatenate_embeddings({"a": np.ones((2, 3))}, models=["a", "z"])


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat"])
def test_search_matches_bruteforce_allowing_ties(factory: str):
    rng = np.random.default_rng(1)
    g = l2_normalize(rng.normal(size=(200, 8)))
    q = l2_normalize(rng.normal(size=(10, 8)))
    index = build_index(g, _manifest(), IndexConfig(factory=factory, nprobe=4))
    sims, idx = index.search(q, _manifest(), k=5)
    # Compare similarity values rank by rank (ties may swap indices, never values).
    np.testing.assert_allclose(sims, _topk_bruteforce(q, g, 5), atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(q @ g.T, idx, axis=1), sims, atol=1e-5)


def test_round_trip_and_manifest_refusal(tmp_path: Path):
    rng = np.random.default_rng(2)
    g = l2_normalize(rng.normal(size=(50, 12)))
    manifest = _manifest(dims=(4, 8), weights=(1.0, 1.0))
    build_index(g, manifest).save(tmp_path / "idx")
    loaded = load_index(tmp_path / "idx")
    assert loaded.ntotal == 50 and loaded.manifest == manifest
    sims, _ = loaded.search(g[:3], manifest, k=1)
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)
    other = _manifest(dims=(4, 8), weights=(1.0, 1.0), data_version="v2")
    with pytest.raises(ManifestMismatchError, match="data_version"):
        loaded.search(g[:3], other)
    with pytest.raises(ManifestMismatchError, match="models"):
        loaded.search(g[:3], _manifest(dims=(12,)))


def test_unnormalised_gallery_and_missing_index_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="L2-normalised"):
        build_index(np.full((3, 8), 2.0, dtype=np.float32), _manifest())
    with pytest.raises(FileNotFoundError, match="no saved index"):
        load_index(tmp_path)
