"""A tiny split for search and report tests: items of three classes, and embedding sets
(category protocol) whose vectors cluster by class, so rankings are meaningful."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clothes_retrieval.evaluation import category_queries, ground_truth_gallery
from clothes_retrieval.index import l2_normalize
from clothes_retrieval.search.experiments import EmbeddingSet

CLASSES = {1: "short sleeve top", 8: "trousers", 9: "skirt"}


def items(n_user: int = 3, n_shop: int = 4) -> pd.DataFrame:
    """Per class ``n_user`` consumer items and ``n_shop`` shop items, one per photo."""
    rows = []
    for cid, name in CLASSES.items():
        for source, n in (("user", n_user), ("shop", n_shop)):
            for i in range(n):
                image_id = len(rows) + 1
                rows.append(
                    {
                        "item_uid": f"{source}-{cid}-{i}",
                        "dataset": "tiny",
                        "split": "validation",
                        "image_id": image_id,
                        "image_path": f"/nonexistent/{image_id}.jpg",
                        "item_index": 0,
                        "source": source,
                        "x1": 0.0,
                        "y1": 0.0,
                        "x2": 40.0,
                        "y2": 60.0,
                        "category_id": cid,
                        "category_name": name,
                        "pair_id": image_id,
                        "style": 0,
                    }
                )
    return pd.DataFrame(rows)


def embedding_set(
    gt_items: pd.DataFrame,
    model: str = "m0",
    box_source: str = "gt",
    *,
    seed: int = 0,
    noise: float = 0.8,
    dim: int = 8,
    query_scores: np.ndarray | None = None,
) -> EmbeddingSet:
    """``model``'s set on ``gt_items`` (category protocol): each vector its class's centre
    plus noise (a different draw per model). ``query_scores``: the query boxes' scores
    (as fused boxes carry); default 1."""
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(size=dim) for c in CLASSES}
    q_rows = category_queries(gt_items).assign(score=1.0)
    g_rows = ground_truth_gallery(gt_items).assign(score=1.0)
    if query_scores is not None:
        q_rows = q_rows.assign(score=query_scores)

    def vectors(rows: pd.DataFrame) -> np.ndarray:
        x = np.stack([centres[c] + noise * rng.normal(size=dim) for c in rows["category_id"]])
        return l2_normalize(x.astype(np.float32))

    return EmbeddingSet(model, box_source, vectors(q_rows), vectors(g_rows), q_rows, g_rows)
