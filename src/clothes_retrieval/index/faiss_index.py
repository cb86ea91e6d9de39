"""The faiss search index, described by a factory string, saved with a manifest.

The manifest records what the indexed vectors are (which models, in which order, their
dimensions and weights, which boxes were embedded, which data version, which
post-processing); a search with query embeddings whose manifest differs is refused,
because comparing vectors from different models or data is silently meaningless.

Inner product on L2-normalised vectors (cosine similarity) is the metric. The default
factory ``"Flat"`` is exact; large galleries can use e.g. ``"IVF1024,Flat"`` or
``"IVF4096,PQ64"`` (trained on the gallery). On a machine with GPUs
(``faiss.get_num_gpus() > 0``) the index is searched on all of them; faiss-gpu without a
GPU returns an empty index from ``index_cpu_to_all_gpus``, hence the check.
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
    "build_index",
    "load_index",
]


class ManifestMismatchError(ValueError):
    """Query embeddings do not match what the index was built from."""


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
        """The fields that must match between index and queries."""
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
        return cls(
            models=tuple(d["models"]),
            dims=tuple(int(x) for x in d["dims"]),
            box_source=d["box_source"],
            data_version=d["data_version"],
            weights=tuple(float(x) for x in d.get("weights", ())),
            postprocess=tuple(d.get("postprocess", ())),
            extra=dict(d.get("extra", {})),
        )


def _gpu_wanted(config: IndexConfig) -> bool:
    available = faiss.get_num_gpus() > 0 if hasattr(faiss, "get_num_gpus") else False
    if config.use_gpu and not available:
        raise RuntimeError(
            "use_gpu is set but faiss sees no GPU (is faiss-gpu installed and a GPU visible?)"
        )
    return available if config.use_gpu is None else bool(config.use_gpu)


class SearchIndex:
    """A faiss index over gallery vectors, with its manifest and config."""

    def __init__(self, index: faiss.Index, manifest: IndexManifest, config: IndexConfig) -> None:
        self.index = index
        self.manifest = manifest
        self.config = config
        self._search_index = index
        if _gpu_wanted(config):
            self._search_index = faiss.index_cpu_to_all_gpus(index)
            logger.info("faiss: searching on %d GPUs", faiss.get_num_gpus())
        if hasattr(index, "nprobe"):
            faiss.extract_index_ivf(index).nprobe = config.nprobe

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def check(self, query_manifest: IndexManifest) -> None:
        """Raise :class:`ManifestMismatchError` naming every differing field."""
        mine, theirs = self.manifest.key(), query_manifest.key()
        diffs = [
            f"{k}: index {mine[k]!r} vs queries {theirs[k]!r}" for k in mine if mine[k] != theirs[k]
        ]
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
            raise ManifestMismatchError(
                f"queries have shape {queries.shape}; the index holds {self.manifest.dim}-d vectors"
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


def load_index(in_dir: str | Path) -> SearchIndex:
    in_dir = Path(in_dir)
    if not (in_dir / "index.faiss").is_file() or not (in_dir / "manifest.json").is_file():
        raise FileNotFoundError(
            f"{in_dir} holds no saved index (index.faiss + manifest.json); build it first"
        )
    meta = json.loads((in_dir / "manifest.json").read_text())
    index = faiss.read_index(str(in_dir / "index.faiss"))
    return SearchIndex(
        index, IndexManifest.from_json(meta["manifest"]), IndexConfig.model_validate(meta["config"])
    )
