"""A reduced box set: keep only the top-scoring fused boxes (the paper's Table 7).

The paper re-ranked with 126k of its 590k WBF_5 boxes on validation, without saying how
the boxes were chosen. Here the choice is by the boxes' fusion score, in two optional
steps applied in this order: at most ``per_image`` boxes per photo, then the top
``fraction`` of what is left (of each side, queries and gallery, separately). Ties keep
the earlier row, so every model's set (the same boxes, the same row order) keeps the
same rows and ensembles still line up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pydantic import Field

from clothes_retrieval.config import FrozenConfig
from clothes_retrieval.search.experiments import EmbeddingSet

__all__ = ["BoxBudgetConfig", "apply_box_budget", "budget_rows"]

SIDES = ("query", "gallery")


class BoxBudgetConfig(FrozenConfig):
    """Which fused boxes a reduced-box-set experiment keeps (both None: no such rows)."""

    per_image: int | None = Field(
        default=None, ge=1, description="keep at most this many top-scoring boxes per photo"
    )
    fraction: float | None = Field(
        default=None, gt=0, le=1, description="then keep this top-scoring fraction of the boxes"
    )

    @property
    def enabled(self) -> bool:
        return self.per_image is not None or self.fraction is not None

    def describe(self) -> str:
        parts = []
        if self.per_image is not None:
            parts.append(f"top {self.per_image} per image by score")
        if self.fraction is not None:
            parts.append(f"top {self.fraction:.0%} by score")
        return ", then ".join(parts) or "all boxes"


def budget_rows(rows: pd.DataFrame, budget: BoxBudgetConfig) -> np.ndarray:
    """Sorted positions of the rows of ``rows`` (columns ``image_id``, ``score``) that
    ``budget`` keeps."""
    order = pd.DataFrame(
        {
            "image_id": rows["image_id"].to_numpy(),
            "score": rows["score"].to_numpy(np.float64),
            "pos": np.arange(len(rows)),
        }
    ).sort_values(["score", "pos"], ascending=[False, True], kind="stable")
    if budget.per_image is not None:
        order = order[order.groupby("image_id").cumcount() < budget.per_image]
    if budget.fraction is not None:
        order = order.iloc[: math.ceil(budget.fraction * len(order))]
    return np.sort(order["pos"].to_numpy())


def apply_box_budget(
    es: EmbeddingSet, budget: BoxBudgetConfig, sides: Sequence[str] = SIDES
) -> EmbeddingSet:
    """``es`` with only the boxes ``budget`` keeps on ``sides`` (``query`` and/or
    ``gallery``; under the category protocol the gallery is ground truth and stays
    whole)."""
    if unknown := set(sides) - set(SIDES):
        raise ValueError(f"unknown sides {sorted(unknown)}: use {SIDES}")
    parts = {}
    for side in SIDES:
        vectors, rows = getattr(es, side), getattr(es, f"{side}_rows")
        if side in sides:
            keep = budget_rows(rows, budget)
            vectors, rows = vectors[keep], rows.iloc[keep].reset_index(drop=True)
        parts[side], parts[f"{side}_rows"] = vectors, rows
    return EmbeddingSet(model=es.model, box_source=es.box_source, **parts)
