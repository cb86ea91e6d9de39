"""Feature concatenation of several retrieval models (the paper's ensembles, Table 6).

Each model's embeddings are L2-normalised, optionally scaled by a per-model weight, placed
side by side and L2-normalised again. With weights w_m the inner product of two
concatenated vectors is ``sum_m w_m^2 <a_m, b_m> / (sum_m w_m^2)``: a weighted average of
the models' cosine similarities, so equal weights give every model an equal vote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["l2_normalize", "concatenate_embeddings"]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


def concatenate_embeddings(
    embeddings: Mapping[str, np.ndarray],
    models: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Concatenate the (N, D_m) embeddings of ``models`` (default: all, in mapping order).

    Every array must have the same rows in the same order (the same crops); the result is
    (N, sum D_m), row-major, L2-normalised float32.
    """
    names = list(models) if models is not None else list(embeddings)
    if not names:
        raise ValueError("no models to concatenate: name at least one")
    missing = [m for m in names if m not in embeddings]
    if missing:
        raise KeyError(f"no embeddings for models {missing}; available: {sorted(embeddings)}")
    rows = {m: embeddings[m].shape[0] for m in names}
    if len(set(rows.values())) != 1:
        raise ValueError(
            f"models embed different numbers of crops: {rows}; they must embed the same crops"
        )
    weights = dict(weights or {})
    unknown = set(weights) - set(names)
    if unknown:
        raise KeyError(f"weights given for models not in the ensemble: {sorted(unknown)}")
    parts = []
    for m in names:
        w = float(weights.get(m, 1.0))
        if w < 0:
            raise ValueError(f"weight of {m} is negative ({w})")
        parts.append(l2_normalize(embeddings[m]) * w)
    return l2_normalize(np.concatenate(parts, axis=1))
