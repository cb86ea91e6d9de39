"""Rank gallery vectors for each query, with the paper's post-processing steps switchable.

Order of the steps (each off by default, each a config switch):

1. **Whitening**, fitted on embeddings of the *training* split that the caller passes
   (never on the gallery it transforms: a small gallery is rank-deficient at the
   embedding's dimension and whitening it wrecks the ranking): ``pca``: PCA whitening of
   the training vectors; ``learned``: Radenović's whitening learned on their matching
   (consumer, shop) pairs.
2. **DBA** — database-side augmentation of the gallery vectors.
3. **Nearest-neighbour search** — exact inner product with faiss (the index factory of
   :class:`~clothes_retrieval.index.IndexConfig`).
4. **α-QE** — each query replaced by the similarity-weighted mean of itself and its top
   gallery neighbours, then searched again.
5. **k-reciprocal re-ranking** — the sparse implementation (same lists as the dense
   algorithm, linear memory).

The paper found whitening, QE and DBA not to help on DeepFashion2 and re-ranking to help
only on a reduced box set; the evaluation report measures each on our data.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from clothes_retrieval.config import FrozenConfig
from clothes_retrieval.index import IndexConfig, IndexManifest, build_index, l2_normalize
from clothes_retrieval.postprocess import (
    alpha_query_expansion,
    database_side_augmentation,
    fit_learned_whitening,
    fit_pca_whitening,
    rerank_sparse,
)

logger = logging.getLogger(__name__)

__all__ = [
    "WhiteningConfig",
    "QueryExpansionConfig",
    "DBAConfig",
    "RerankConfig",
    "PostprocessConfig",
    "rank_gallery",
]


class WhiteningConfig(FrozenConfig):
    mode: str = Field(default="none", pattern="^(none|pca|learned)$")
    dim: int | None = Field(default=None, ge=1, description="keep this many whitened dims")
    allow_rank_deficient: bool = Field(
        default=False,
        description="fit PCA whitening to more dimensions than the training vectors span",
    )


class QueryExpansionConfig(FrozenConfig):
    enabled: bool = False
    k: int = Field(default=2, ge=1, description="gallery neighbours averaged into the query")
    alpha: float = Field(default=3.0, ge=0)


class DBAConfig(FrozenConfig):
    enabled: bool = False
    k: int = Field(
        default=2, ge=1, description="gallery neighbours averaged into each gallery vector"
    )
    alpha: float = Field(default=3.0, ge=0)


class RerankConfig(FrozenConfig):
    enabled: bool = False
    k1: int = Field(default=20, ge=1)
    k2: int = Field(default=6, ge=1)
    lambda_value: float = Field(default=0.3, ge=0, le=1)


class PostprocessConfig(FrozenConfig):
    whitening: WhiteningConfig = WhiteningConfig()
    query_expansion: QueryExpansionConfig = QueryExpansionConfig()
    dba: DBAConfig = DBAConfig()
    rerank: RerankConfig = RerankConfig()

    def steps(self) -> tuple[str, ...]:
        """The enabled steps, in the order applied (empty: plain nearest neighbour)."""
        out = []
        if self.whitening.mode != "none":
            out.append(f"whiten-{self.whitening.mode}")
        if self.dba.enabled:
            out.append("dba")
        if self.query_expansion.enabled:
            out.append("qe")
        if self.rerank.enabled:
            out.append("rerank")
        return tuple(out)

    def label(self) -> str:
        return " + ".join(self.steps()) or "nearest neighbour"


def rank_gallery(
    queries: np.ndarray,
    gallery: np.ndarray,
    post: PostprocessConfig | None = None,
    *,
    k: int = 20,
    index_config: IndexConfig | None = None,
    training: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` gallery rows per query: ``(indices (Q, k) int64, scores (Q, k))``.

    ``queries`` (Q, D) and ``gallery`` (G, D) are L2-normalised. Scores are similarities
    (higher is better) except after re-ranking, where they are the negated re-ranked
    distances, so that higher is still better. ``training`` = (vectors (N, D), pairs (P, 2)
    row indices of matching consumer and shop vectors) of the training split, needed for
    whitening (``pca`` uses the vectors, ``learned`` also the pairs). When G < k, rows end
    with -1.
    """
    post = post or PostprocessConfig()
    q = l2_normalize(queries)
    g = l2_normalize(gallery)
    if len(g) == 0:
        raise ValueError("the gallery is empty: nothing to search")

    w_cfg = post.whitening
    if w_cfg.mode != "none":
        if training is None or len(training[0]) == 0:
            raise ValueError(
                f"{w_cfg.mode} whitening is fitted on training-split embeddings: pass "
                "training=(vectors, pairs) (the embeddings asset writes them when a "
                "post-processing step whitens)"
            )
        x = l2_normalize(training[0])
        if x.shape[1] != g.shape[1]:
            raise ValueError(
                f"training vectors are {x.shape[1]}-d but the gallery is {g.shape[1]}-d; "
                "embed both with the same models"
            )
        if w_cfg.mode == "pca":
            w = fit_pca_whitening(x, dim=w_cfg.dim, allow_rank_deficient=w_cfg.allow_rank_deficient)
        else:
            w = fit_learned_whitening(x, np.asarray(training[1]), dim=w_cfg.dim)
        q, g = w.apply(q), w.apply(g)

    if post.dba.enabled:
        g = database_side_augmentation(
            g, k=min(post.dba.k, max(len(g) - 1, 1)), alpha=post.dba.alpha
        )

    if post.query_expansion.enabled:
        q = alpha_query_expansion(
            q, g, k=min(post.query_expansion.k, len(g)), alpha=post.query_expansion.alpha
        )

    if post.rerank.enabled:
        r = post.rerank
        ranked = rerank_sparse(
            q, g, k1=r.k1, k2=r.k2, lambda_value=r.lambda_value, topk=min(k, len(g))
        )
        idx, scores = ranked.indices.astype(np.int64), -ranked.distances
    else:
        manifest = IndexManifest(
            models=("vectors",), dims=(g.shape[1],), box_source="-", data_version="-"
        )
        index = build_index(g, manifest, index_config or IndexConfig())
        scores, idx = index.search(q, manifest, k=min(k, len(g)))
        idx = idx.astype(np.int64)
    if idx.shape[1] < k:  # a gallery smaller than k: pad with -1 (ranking_to_submission pads)
        pad = k - idx.shape[1]
        idx = np.concatenate([idx, np.full((len(idx), pad), -1, np.int64)], axis=1)
        scores = np.concatenate([scores, np.full((len(scores), pad), -np.inf)], axis=1)
    return idx, scores
