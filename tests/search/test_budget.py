"""A box budget keeps the top-scoring boxes per photo, then the top fraction, the same
rows for every model, and only on the sides asked for."""

import math

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.search.budget import BoxBudgetConfig, apply_box_budget, budget_rows
from clothes_retrieval.search.experiments import EmbeddingSet


def _rows(seed: int = 0, n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Scores on a coarse grid, so that ties occur.
    return pd.DataFrame({"image_id": rng.integers(0, 8, n), "score": rng.integers(0, 5, n) / 4})


def _reference(rows: pd.DataFrame, per_image: int | None, fraction: float | None) -> list[int]:
    """The same rule with plain loops: best score first, the earlier row on a tie."""
    ranked = sorted(range(len(rows)), key=lambda i: (-rows["score"][i], i))
    if per_image is not None:
        seen: dict[int, int] = {}
        kept = []
        for i in ranked:
            img = rows["image_id"][i]
            if seen.get(img, 0) < per_image:
                kept.append(i)
                seen[img] = seen.get(img, 0) + 1
        ranked = kept
    if fraction is not None:
        ranked = ranked[: math.ceil(fraction * len(ranked))]
    return sorted(ranked)


@pytest.mark.parametrize(
    ("per_image", "fraction"), [(1, None), (2, None), (None, 0.25), (2, 0.5), (None, 1.0)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_budget_keeps_the_top_scoring_boxes(per_image, fraction, seed):
    rows = _rows(seed)
    kept = budget_rows(rows, BoxBudgetConfig(per_image=per_image, fraction=fraction))
    assert kept.tolist() == _reference(rows, per_image, fraction)
    if per_image is not None:
        assert rows.iloc[kept]["image_id"].value_counts().max() <= per_image


def test_budget_reduces_only_the_sides_asked_for_with_vectors_aligned():
    q_rows, g_rows = _rows(0), _rows(1, n=30)
    q = np.arange(len(q_rows), dtype=np.float32)[:, None].repeat(2, axis=1)
    g = np.arange(len(g_rows), dtype=np.float32)[:, None].repeat(2, axis=1)
    es = EmbeddingSet("m0", "fused", q, g, q_rows, g_rows)
    budget = BoxBudgetConfig(per_image=1)
    both = apply_box_budget(es, budget)
    assert both.query[:, 0].astype(int).tolist() == budget_rows(q_rows, budget).tolist()
    assert both.gallery[:, 0].astype(int).tolist() == budget_rows(g_rows, budget).tolist()
    assert both.query_rows["image_id"].is_unique and both.gallery_rows["image_id"].is_unique
    queries_only = apply_box_budget(es, budget, ("query",))
    assert len(queries_only.query) == len(both.query) < len(q)
    assert queries_only.gallery is g and queries_only.gallery_rows is g_rows
    with pytest.raises(ValueError, match="unknown sides"):
        apply_box_budget(es, budget, ("queries",))


def test_a_budget_is_off_by_default_and_validated():
    assert not BoxBudgetConfig().enabled
    assert BoxBudgetConfig(fraction=0.2).describe() == "top 20% by score"
    assert BoxBudgetConfig(per_image=3, fraction=0.5).describe() == (
        "top 3 per image by score, then top 50% by score"
    )
    with pytest.raises(ValueError):
        BoxBudgetConfig(fraction=0.0)
