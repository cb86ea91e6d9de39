"""Search: concatenating model embeddings, the faiss index with its manifest.

Publishing the index for serving: :mod:`clothes_retrieval.service`.
"""

from clothes_retrieval.index.concat import concatenate_embeddings, l2_normalize
from clothes_retrieval.index.faiss_index import (
    IndexConfig,
    IndexManifest,
    ManifestMismatchError,
    SearchIndex,
    build_index,
    load_index,
)

__all__ = [
    "IndexConfig",
    "IndexManifest",
    "ManifestMismatchError",
    "SearchIndex",
    "build_index",
    "concatenate_embeddings",
    "l2_normalize",
    "load_index",
]
