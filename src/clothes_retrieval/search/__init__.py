"""Search with optional post-processing (whitening, DBA, α-QE, k-reciprocal re-ranking)."""

from clothes_retrieval.search.budget import BoxBudgetConfig, apply_box_budget
from clothes_retrieval.search.rank import (
    DBAConfig,
    PostprocessConfig,
    QueryExpansionConfig,
    RerankConfig,
    WhiteningConfig,
    rank_gallery,
)

__all__ = [
    "BoxBudgetConfig",
    "DBAConfig",
    "PostprocessConfig",
    "QueryExpansionConfig",
    "RerankConfig",
    "WhiteningConfig",
    "apply_box_budget",
    "rank_gallery",
]
