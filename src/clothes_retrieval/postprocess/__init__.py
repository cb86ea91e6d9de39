"""Post-processing for search: whitening, query expansion / DBA, k-reciprocal re-ranking.

All functions take and return (N, D) row-major, L2-normalised float32 embeddings (or, for
re-ranking, ranked gallery lists). One concept per module:
:mod:`~clothes_retrieval.postprocess.whitening`,
:mod:`~clothes_retrieval.postprocess.query_expansion`,
:mod:`~clothes_retrieval.postprocess.rerank`, and the exact k-NN search they share,
:mod:`~clothes_retrieval.postprocess.knn`.
"""

from clothes_retrieval.postprocess.knn import farthest_inner_product, knn_inner_product
from clothes_retrieval.postprocess.query_expansion import (
    alpha_query_expansion,
    database_side_augmentation,
)
from clothes_retrieval.postprocess.rerank import (
    RankedLists,
    rerank_dense,
    rerank_sparse,
    topk_from_distance,
)
from clothes_retrieval.postprocess.whitening import (
    Whitening,
    fit_learned_whitening,
    fit_pca_whitening,
)

__all__ = [
    "RankedLists",
    "Whitening",
    "alpha_query_expansion",
    "database_side_augmentation",
    "farthest_inner_product",
    "fit_learned_whitening",
    "fit_pca_whitening",
    "knn_inner_product",
    "rerank_dense",
    "rerank_sparse",
    "topk_from_distance",
]
