"""Search with optional post-processing (whitening, DBA, α-QE, k-reciprocal re-ranking)."""

from clothes_retrieval.search.rank import (
    DBAConfig,
    PostprocessConfig,
    QueryExpansionConfig,
    RerankConfig,
    WhiteningConfig,
    rank_gallery,
)

__all__ = [
    "DBAConfig",
    "PostprocessConfig",
    "QueryExpansionConfig",
    "RerankConfig",
    "WhiteningConfig",
    "rank_gallery",
]
