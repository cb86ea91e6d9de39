"""The faiss search index, described by a factory string, saved with a manifest.

The manifest records what the indexed vectors are (which models, in which order, their
dimensions and weights, which boxes were embedded, which data version, which
post-processing); a search with query embeddings whose manifest differs is refused,
because comparing vectors from different models or data is silently meaningless. Loading
a saved index refuses a manifest that does not describe its ``index.faiss`` (dimension,
factory, metric) and, given the manifest the caller expects, any field that differs.

Inner product on L2-normalised vectors (cosine similarity) is the metric. The default
factory ``"Flat"`` is exact; large galleries can use e.g. ``"IVF1024,Flat"`` or
``"IVF4096,PQ64"`` (trained on the gallery). On a machine with GPUs
(``faiss.get_num_gpus() > 0``) the index is searched on all of them; faiss-gpu without a
GPU returns an empty index from ``index_cpu_to_all_gpus``, hence the check. The GPU copy
holds its own search parameters, so nprobe is set on the index that is searched, after the
copy (:func:`apply_search_parameters`), not only on the CPU index it was copied from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pydantic import Field

from clothes_retrieval.config import FrozenConfig
from clothes_retrieval.io import atomic_dir

logger = logging.getLogger(__name__)

__all__ = [
    "IndexConfig",
    "IndexManifest",
    "ManifestMismatchError",
    "SearchIndex",
    "apply_search_parameters",
    "build_index",
    "load_index",
]


class ManifestMismatchError(ValueError):
    """Query embeddings, or a saved index file, do not match what the manifest says."""


class IndexConfig(FrozenConfig):
    factory: str = Field(
        default="Flat", description="faiss index_factory string (metric: inner product)"
    )
    nprobe: int = Field(default=16, ge=1, description="IVF cells visited per query")
    use_gpu: bool | None = Field(default=None, description="None: use GPUs when faiss sees any")
    k: int = Field(default=20, ge=1, description="results per query (DeepFashion2 scores 20)")


@dataclass(frozen=True)
class IndexManifest:
    """What the vectors are; two manifests must agree for a search to be meaningful."""

    models: tuple[str, ...]
    dims: tuple[int, ...]
    box_source: str
    data_version: str
    weights: tuple[float, ...] = ()
    postprocess: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(sum(self.dims))

    def key(self) -> dict[str, Any]:
        """The fields that must match between index and queries: every field but ``extra``
        (free-form labels such as the published configuration's name)."""
        return {
            "models": list(self.models),
            "dims": list(self.dims),
            "weights": list(self.weights),
            "box_source": self.box_source,
            "data_version": self.data_version,
            "postprocess": list(self.postprocess),
        }

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["dim"] = self.dim
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> IndexManifest:
        """Read :meth:`to_json`'s output, refusing missing fields and a ``dim`` that is not
        the sum of ``dims`` (a hand-edited or truncated manifest)."""
        missing = [f for f in ("models", "dims", "box_source", "data_version") if f not in d]
        if missing:
            raise ManifestMismatchError(
                f"manifest lacks the fields {missing}; rebuild the index (it writes them all)"
            )
        m = cls(
            models=tuple(d["models"]),
            dims=tuple(int(x) for x in d["dims"]),
            box_source=d["box_source"],
            data_version=d["data_version"],
            weights=tuple(float(x) for x in d.get("weights", ())),
            postprocess=tuple(d.get("postprocess", ())),
            extra=dict(d.get("extra", {})),
        )
        if "dim" in d and int(d["dim"]) != m.dim:
            raise ManifestMismatchError(
                f"dim: the manifest says {d['dim']} but its dims {list(m.dims)} sum to {m.dim}; "
                "the manifest was edited or corrupted: rebuild the index"
            )
        return m

    def validate(self) -> None:
        """Refuse a manifest whose per-model lists disagree in length."""
        if len(self.dims) != len(self.models):
            raise ManifestMismatchError(
                f"dims: {len(self.dims)} dimensions for {len(self.models)} models "
                f"{list(self.models)}; rebuild the index with one dimension per model"
            )
        if self.weights and len(self.weights) != len(self.models):
            raise ManifestMismatchError(
                f"weights: {len(self.weights)} weights for {len(self.models)} models "
                f"{list(self.models)}; rebuild the index with one weight per model (or none)"
            )


def _gpu_wanted(config: IndexConfig) -> bool:
    available = faiss.get_num_gpus() > 0 if hasattr(faiss, "get_num_gpus") else False
    if config.use_gpu and not available:
        raise RuntimeError(
            "use_gpu is set but faiss sees no GPU (is faiss-gpu installed and a GPU visible?)"
        )
    return available if config.use_gpu is None else bool(config.use_gpu)


def _differences(a: IndexManifest, b: IndexManifest, a_name: str, b_name: str) -> list[str]:
    """One ``field: a_name ... vs b_name ...`` line per field of :meth:`IndexManifest.key`
    that differs."""
    ka, kb = a.key(), b.key()
    return [f"{k}: {a_name} {ka[k]!r} vs {b_name} {kb[k]!r}" for k in ka if ka[k] != kb[k]]


def _parameter_space() -> faiss.ParameterSpace:
    # GpuParameterSpace (faiss-gpu only) sets GPU indexes and falls back to ParameterSpace
    # for CPU ones; both walk replicas, shards and pre-transforms down to every IVF inside.
    gpu_space = getattr(faiss, "GpuParameterSpace", None)
    return gpu_space() if gpu_space is not None else faiss.ParameterSpace()


def apply_search_parameters(searched: faiss.Index, config: IndexConfig) -> None:
    """Set ``config``'s search-time parameters (IVF ``nprobe``) on ``searched``.

    ``searched`` is the index searches run on: a CPU index, or its copy on the GPUs (one
    GPU index, or replicas of one per GPU). A copy keeps its own nprobe, so this is called
    on the copy after ``index_cpu_to_all_gpus``; setting the CPU index does not reach it.
    Only call it on an index with an IVF inside (faiss refuses nprobe elsewhere).
    """
    _parameter_space().set_index_parameter(searched, "nprobe", config.nprobe)


def _is_ivf(index: faiss.Index) -> bool:
    return faiss.try_extract_index_ivf(index) is not None


class SearchIndex:
    """A faiss index over gallery vectors, with its manifest and config."""

    def __init__(self, index: faiss.Index, manifest: IndexManifest, config: IndexConfig) -> None:
        self.index = index
        self.manifest = manifest
        self.config = config
        ivf = _is_ivf(index)
        if ivf:  # the CPU index too, so that save() writes the configured nprobe
            apply_search_parameters(index, config)
        self._search_index = index
        if _gpu_wanted(config):
            self._search_index = faiss.index_cpu_to_all_gpus(index)
            logger.info("faiss: searching on %d GPUs", faiss.get_num_gpus())
            if ivf:
                apply_search_parameters(self._search_index, config)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def searched_index(self) -> faiss.Index:
        """The faiss index searches run on: :attr:`index` itself, or its copy on the GPUs."""
        return self._search_index

    def check(self, query_manifest: IndexManifest) -> None:
        """Raise :class:`ManifestMismatchError` naming every differing field."""
        diffs = _differences(self.manifest, query_manifest, "index", "queries")
        if diffs:
            raise ManifestMismatchError(
                "query embeddings do not match the index; rebuild the index or embed the queries "
                "with the same models and data:\n  " + "\n  ".join(diffs)
            )

    def search(
        self, queries: np.ndarray, query_manifest: IndexManifest, k: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, gallery row indices), each (Q, k); -1 pads when the gallery is small."""
        self.check(query_manifest)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.manifest.dim:
            # Checked here: faiss would fail on an assertion (or read past the row) instead.
            raise ManifestMismatchError(
                f"queries have shape {queries.shape}; the index holds {self.manifest.dim}-d "
                f"vectors (models {list(self.manifest.models)}, dims {list(self.manifest.dims)}): "
                f"pass a (Q, {self.manifest.dim}) array embedded like the gallery "
                "(one query: queries[None])"
            )
        k = k or self.config.k
        return self._search_index.search(queries, k)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``index.faiss`` + ``manifest.json`` atomically into ``out_dir``."""
        out_dir = Path(out_dir)
        with atomic_dir(out_dir) as tmp:
            faiss.write_index(self.index, str(tmp / "index.faiss"))
            (tmp / "manifest.json").write_text(
                json.dumps(
                    {
                        "manifest": self.manifest.to_json(),
                        "config": self.config.model_dump(mode="json"),
                    },
                    indent=2,
                )
            )
        return out_dir


def build_index(
    gallery: np.ndarray, manifest: IndexManifest, config: IndexConfig | None = None
) -> SearchIndex:
    """Index L2-normalised (G, D) gallery vectors (inner product = cosine similarity)."""
    config = config or IndexConfig()
    manifest.validate()  # what load_index would refuse is not built in the first place
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    if gallery.ndim != 2 or gallery.shape[1] != manifest.dim:
        raise ValueError(
            f"gallery has shape {gallery.shape}; the manifest says {manifest.dim}-d vectors"
        )
    norms = np.linalg.norm(gallery, axis=1)
    if len(norms) and not np.allclose(norms[norms > 0], 1.0, atol=1e-3):
        raise ValueError("gallery vectors must be L2-normalised (use index.l2_normalize)")
    index = faiss.index_factory(manifest.dim, config.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        logger.info("faiss: training %s on %d vectors", config.factory, len(gallery))
        index.train(gallery)
    index.add(gallery)
    return SearchIndex(index, manifest, config)


def _layout(index: faiss.Index) -> tuple[Any, ...]:
    """What an index is, structurally: its transforms, its class, the IVF list count."""
    # Every wrapper stays referenced: a downcast proxy does not own its object, and the
    # object dies with the last owning proxy (a caller's temporary, say).
    chain_of = [index, faiss.downcast_index(index)]
    parts: list[Any] = []
    while isinstance(chain_of[-1], faiss.IndexPreTransform):
        chain = chain_of[-1].chain
        parts += [
            type(faiss.downcast_VectorTransform(chain.at(i))).__name__ for i in range(chain.size())
        ]
        chain_of.append(faiss.downcast_index(chain_of[-1].index))
    parts.append(type(chain_of[-1]).__name__)
    ivf = faiss.try_extract_index_ivf(chain_of[-1])
    if ivf is not None:
        parts.append(("nlist", int(ivf.nlist)))
    return tuple(parts)


def _check_index_file(index: faiss.Index, manifest: IndexManifest, config: IndexConfig) -> None:
    """Refuse a manifest that does not describe the index file beside it."""
    if index.d != manifest.dim:
        raise ManifestMismatchError(
            f"dims: the manifest says {manifest.dim}-d vectors (dims {list(manifest.dims)}) but "
            f"index.faiss holds {index.d}-d vectors; the two files come from different builds: "
            "rebuild the index"
        )
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ManifestMismatchError(
            f"metric: index.faiss uses faiss metric {index.metric_type}, not inner product; "
            "rebuild it with build_index"
        )
    # The factory's (empty) index through a write and read, as index.faiss went: reading
    # gives specialised classes (IndexFlatIP for an inner-product IndexFlat).
    fresh = faiss.index_factory(index.d, config.factory, faiss.METRIC_INNER_PRODUCT)
    fresh = faiss.deserialize_index(faiss.serialize_index(fresh))
    expected = _layout(fresh)
    if _layout(index) != expected:
        raise ManifestMismatchError(
            f"factory: the manifest says {config.factory!r} ({expected}) but index.faiss is "
            f"{_layout(index)}; the two files come from different builds: rebuild the index"
        )


def load_index(in_dir: str | Path, expected: IndexManifest | None = None) -> SearchIndex:
    """Load a saved index, refusing a manifest that does not describe its ``index.faiss``
    and, when ``expected`` is given, one that differs from it in any field of
    :meth:`IndexManifest.key` (a service that knows its query models passes them)."""
    in_dir = Path(in_dir)
    if not (in_dir / "index.faiss").is_file() or not (in_dir / "manifest.json").is_file():
        raise FileNotFoundError(
            f"{in_dir} holds no saved index (index.faiss + manifest.json); build it first"
        )
    meta = json.loads((in_dir / "manifest.json").read_text())
    for section in ("manifest", "config"):
        if section not in meta:
            raise ManifestMismatchError(
                f"{in_dir / 'manifest.json'} has no {section!r} section; rebuild the index"
            )
    config = IndexConfig.model_validate(meta["config"])
    index = faiss.read_index(str(in_dir / "index.faiss"))
    try:
        manifest = IndexManifest.from_json(meta["manifest"])
        manifest.validate()
        _check_index_file(index, manifest, config)
    except ManifestMismatchError as e:  # the same error, saying which saved index it is
        raise ManifestMismatchError(f"the saved index in {in_dir} is refused:\n  {e}") from e
    if expected is not None:
        diffs = _differences(manifest, expected, "saved", "expected")
        if diffs:
            raise ManifestMismatchError(
                f"the index in {in_dir} was built from other vectors than expected; rebuild it "
                "(materialise search_index) from the expected models and data, or load it "
                "expecting the manifest it was built with:\n  " + "\n  ".join(diffs)
            )
    return SearchIndex(index, manifest, config)
