import dataclasses
import json
import re
from pathlib import Path

import faiss
import numpy as np
import pytest

from clothes_retrieval.index import (
    IndexConfig,
    IndexManifest,
    ManifestMismatchError,
    SearchIndex,
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


# --- nprobe reaches the index that is searched ------------------------------------------

NLIST = 32  # IVF cells; 2000 vectors train 32 centroids without faiss's too-few-points warning


@pytest.fixture(scope="module")
def ivf_data() -> tuple[np.ndarray, np.ndarray]:
    """(2000, 16) gallery and (100, 16) queries, L2-normalised: unclustered, so one IVF cell
    (nprobe=1) misses many true nearest neighbours and all cells (nprobe=NLIST) miss none."""
    rng = np.random.default_rng(3)
    return l2_normalize(rng.normal(size=(2000, 16))), l2_normalize(rng.normal(size=(100, 16)))


def _recall_at_1(index: SearchIndex, g: np.ndarray, q: np.ndarray) -> float:
    """Share of queries whose top-1 similarity is the exact one (ties count as found)."""
    sims, _ = index.search(q, _manifest(dims=(16,)), k=1)
    return float(np.mean(np.abs(sims[:, 0] - (q @ g.T).max(axis=1)) < 1e-5))


def _nprobes(index: faiss.Index) -> list[int]:
    """nprobe of every IVF that searches run on (one per replica on several GPUs)."""
    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexReplicas, faiss.IndexShards)):
        return [n for i in range(index.count()) for n in _nprobes(index.at(i))]
    if isinstance(index, faiss.IndexPreTransform):
        return _nprobes(index.index)
    return [int(index.nprobe if hasattr(index, "nprobe") else index.getNumProbes())]


# "L2norm,..." wraps the IVF in an IndexPreTransform, which has no nprobe of its own.
@pytest.mark.parametrize("factory", [f"IVF{NLIST},Flat", f"L2norm,IVF{NLIST},Flat"])
def test_nprobe_changes_what_an_ivf_search_finds(ivf_data, factory: str):
    g, q = ivf_data
    one = build_index(g, _manifest(dims=(16,)), IndexConfig(factory=factory, nprobe=1))
    assert _nprobes(one.searched_index) == [1]
    recall_one = _recall_at_1(one, g, q)
    every = build_index(g, _manifest(dims=(16,)), IndexConfig(factory=factory, nprobe=NLIST))
    assert _nprobes(every.searched_index) == [NLIST]
    assert _recall_at_1(every, g, q) == 1.0  # every cell visited: exact
    assert recall_one < 0.9  # one cell of 32: neighbours in other cells are missed


def test_saved_index_keeps_the_configured_nprobe(ivf_data, tmp_path: Path):
    g, q = ivf_data
    manifest = _manifest(dims=(16,))
    built = build_index(g, manifest, IndexConfig(factory=f"IVF{NLIST},Flat", nprobe=5))
    built.save(tmp_path / "idx")
    # The index file itself records it (another reader of index.faiss gets the same search)...
    raw = faiss.read_index(str(tmp_path / "idx" / "index.faiss"))
    assert faiss.extract_index_ivf(raw).nprobe == 5
    loaded = load_index(tmp_path / "idx", expected=manifest)
    assert loaded.config.nprobe == 5 and _nprobes(loaded.searched_index) == [5]
    np.testing.assert_array_equal(loaded.search(q, manifest)[1], built.search(q, manifest)[1])
    # ...and the manifest's config is what a loaded index searches with, not the file's value.
    path = tmp_path / "idx" / "manifest.json"
    meta = json.loads(path.read_text())
    meta["config"]["nprobe"] = NLIST
    path.write_text(json.dumps(meta))
    retuned = load_index(tmp_path / "idx", expected=manifest)
    assert _nprobes(retuned.searched_index) == [NLIST]
    assert _recall_at_1(retuned, g, q) == 1.0


def test_nprobe_is_set_on_the_gpu_copy_that_is_searched(ivf_data, monkeypatch):
    """The GPU path on a CPU: "two GPUs", whose copy is replicas of clones that start with
    faiss's default nprobe (the copy holds its own; setting the CPU index does not reach it,
    before or after the copy)."""
    g, q = ivf_data

    def to_two_gpus(index: faiss.Index) -> faiss.Index:
        replicas = faiss.IndexReplicas(index.d)
        for _ in range(2):
            clone = faiss.clone_index(index)
            faiss.extract_index_ivf(clone).nprobe = 1
            replicas.addIndex(clone)  # faiss's wrapper keeps the clone alive
        return replicas

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", to_two_gpus)
    index = build_index(
        g, _manifest(dims=(16,)), IndexConfig(factory=f"IVF{NLIST},Flat", nprobe=NLIST)
    )
    assert isinstance(faiss.downcast_index(index.searched_index), faiss.IndexReplicas)
    assert _nprobes(index.searched_index) == [NLIST, NLIST]
    assert _recall_at_1(index, g, q) == 1.0


def _faiss_gpu_missing() -> str | None:
    if not hasattr(faiss, "GpuParameterSpace"):
        return "faiss is built without GPU support (install the gpu extra: faiss-gpu)"
    if faiss.get_num_gpus() == 0:
        return "faiss sees no GPU (faiss.get_num_gpus() == 0)"
    return None


@pytest.mark.gpu
@pytest.mark.parametrize("nprobe", [1, NLIST])
def test_gpu_search_uses_the_configured_nprobe(ivf_data, nprobe: int):
    reason = _faiss_gpu_missing()
    if reason:
        pytest.skip(reason)
    g, q = ivf_data
    manifest = _manifest(dims=(16,))
    config = IndexConfig(factory=f"IVF{NLIST},Flat", nprobe=nprobe)
    cpu = build_index(g, manifest, config.model_copy(update={"use_gpu": False}))
    # The same trained index, searched on the GPUs.
    gpu = SearchIndex(cpu.index, manifest, config.model_copy(update={"use_gpu": True}))
    assert gpu.searched_index is not cpu.index
    assert _nprobes(gpu.searched_index) == [nprobe] * faiss.get_num_gpus()
    if nprobe == NLIST:  # exact on both: the same similarities, rank by rank (ties may swap)
        (cpu_sims, _), (gpu_sims, gpu_idx) = (
            cpu.search(q, manifest, k=10),
            gpu.search(q, manifest, k=10),
        )
        np.testing.assert_allclose(gpu_sims, cpu_sims, atol=1e-4)
        np.testing.assert_allclose(
            np.take_along_axis(q @ g.T, gpu_idx, axis=1), gpu_sims, atol=1e-4
        )
    else:  # one cell: the GPU misses what the CPU misses (a near-tie may fall either way)
        assert abs(_recall_at_1(gpu, g, q) - _recall_at_1(cpu, g, q)) <= 0.05
        assert _recall_at_1(gpu, g, q) < 0.9


# --- loading refuses a manifest that does not match -------------------------------------

SAVED = _manifest(dims=(4, 8), weights=(1.0, 1.0), postprocess=("pca_whitening",))

# (field, where in manifest.json, tampered value, refused without an expected manifest):
# every field but the free-form `extra`. A manifest that contradicts itself or its
# index.faiss is refused on its own; one that is merely different, against `expected`.
TAMPERED = [
    ("models", "manifest", ["m0", "m9"], False),
    ("dims", "manifest", [8, 4], False),  # same total: only the expected manifest tells
    ("dims", "manifest", [12], True),  # one dimension for two models
    ("dims", "manifest", [4, 4], True),  # "dim" made to agree; index.faiss holds 12-d vectors
    ("dim", "manifest", 13, True),  # not the sum of dims
    ("weights", "manifest", [1.0, 2.0], False),
    ("weights", "manifest", [1.0], True),  # one weight for two models
    ("box_source", "manifest", "detections/fused", False),
    ("data_version", "manifest", "v2", False),
    ("postprocess", "manifest", [], False),
    ("factory", "config", "IVF4,Flat", True),  # index.faiss is Flat
]


def _saved(tmp_path: Path, manifest: IndexManifest = SAVED) -> Path:
    g = l2_normalize(np.random.default_rng(4).normal(size=(20, 12)))
    build_index(g, manifest).save(tmp_path / "idx")
    return tmp_path / "idx"


def _edit_manifest_file(index_dir: Path, edit) -> None:
    path = index_dir / "manifest.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _refusal(index_dir: Path, expected: IndexManifest | None) -> str:
    with pytest.raises(ManifestMismatchError) as refused:
        load_index(index_dir, expected=expected)
    return str(refused.value)


def test_tampering_cases_cover_every_manifest_field():
    matched = set(SAVED.key())
    assert matched == {f.name for f in dataclasses.fields(IndexManifest)} - {"extra"}
    assert {case[0] for case in TAMPERED} == matched | {"dim", "factory"}


@pytest.mark.parametrize(("field", "section", "value", "on_its_own"), TAMPERED, ids=str)
def test_load_refuses_a_tampered_manifest_naming_the_field(
    tmp_path: Path, field: str, section: str, value, on_its_own: bool
):
    index_dir = _saved(tmp_path)
    assert load_index(index_dir, expected=SAVED).manifest == SAVED  # untampered loads

    def tamper(meta: dict) -> None:
        meta[section][field] = value
        if field == "dims":
            meta["manifest"]["dim"] = sum(value)

    _edit_manifest_file(index_dir, tamper)
    message = _refusal(index_dir, expected=None if on_its_own else SAVED)
    assert re.search(rf"(?m)^\s*{field}: ", message), message  # a line naming the field
    assert "rebuild" in message  # and what to do


def test_load_refuses_an_index_file_of_another_metric(tmp_path: Path):
    index_dir = _saved(tmp_path)
    faiss.write_index(faiss.IndexFlatL2(12), str(index_dir / "index.faiss"))
    message = _refusal(index_dir, expected=SAVED)
    assert re.search(r"(?m)^\s*metric: ", message) and "rebuild" in message, message


@pytest.mark.parametrize("field", ["models", "dims", "box_source", "data_version"])
def test_load_refuses_a_manifest_missing_a_field(tmp_path: Path, field: str):
    index_dir = _saved(tmp_path)
    _edit_manifest_file(index_dir, lambda meta: meta["manifest"].pop(field))
    assert re.search(rf"lacks the fields \['{field}'\].*rebuild", _refusal(index_dir, None))


@pytest.mark.parametrize(
    ("field", "manifest"),
    [
        ("dims", _manifest(dims=(12,), models=("m0", "m1"))),
        ("weights", _manifest(dims=(12,), weights=(1.0, 1.0))),
    ],
)
def test_build_refuses_a_manifest_load_would_refuse(field: str, manifest: IndexManifest):
    g = l2_normalize(np.random.default_rng(4).normal(size=(20, 12)))
    with pytest.raises(ManifestMismatchError, match=rf"^{field}: .*rebuild"):
        build_index(g, manifest)


def test_extra_is_informational_and_not_matched(tmp_path: Path):
    index_dir = _saved(tmp_path, dataclasses.replace(SAVED, extra={"published_name": "a"}))
    assert load_index(index_dir, expected=SAVED).manifest.extra == {"published_name": "a"}


@pytest.mark.parametrize("shape", [(3, 11), (3, 13), (12,), (1, 3, 12)])
def test_query_of_the_wrong_dimension_is_refused_clearly(shape: tuple[int, ...]):
    g = l2_normalize(np.random.default_rng(5).normal(size=(20, 12)))
    index = build_index(g, SAVED)
    queries = np.ones(shape, dtype=np.float32)
    with pytest.raises(ManifestMismatchError, match=r"12-d vectors.*pass a \(Q, 12\) array"):
        index.search(queries, SAVED)
