"""Category-level retrieval accuracy: the protocol for data without instance pairs.

Used where a gallery photo shows *a* garment of the query's class, not *the* garment (real
street photos against product photos sorted by class):

- queries: every consumer (``user``) item of the split; gallery: every shop item;
- ground-truth boxes: each query is embedded from its annotated box;
- detected boxes: each query is answered by the highest-scored detected (fused) box of its
  photo whose IoU with the query's box is at least ``match_iou`` (0.5, DeepFashion2's
  rule, :func:`match_detections`); a query that no box matches is a miss at every k;
- a query is a hit at k when a gallery item of its class (``category_id``) is among its
  first k results. Acc@k = hits / all ground-truth queries;
- the details say, per query, its first hit's rank and its first result's class
  (``top1_category_id``), from which the report's confusion table counts where misses go.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from clothes_retrieval.evaluation.retrieval import DEFAULT_KS, RetrievalScores, box_iou

__all__ = [
    "category_accuracy",
    "category_queries",
    "evaluate_category_retrieval",
    "match_detections",
]


def category_queries(gt_items: pd.DataFrame) -> pd.DataFrame:
    """The split's query items: every user item, ordered by (image_id, item_index)."""
    q = gt_items[gt_items["source"] == "user"]
    return q.sort_values(["image_id", "item_index"], kind="stable").reset_index(drop=True)


def match_detections(queries: pd.DataFrame, boxes: pd.DataFrame, match_iou: float) -> pd.DataFrame:
    """For each query (row of ``queries``), the highest-scored box of its photo with
    IoU >= ``match_iou``; columns ``x1..y2``, ``score``, ``iou`` (NaN when none matches),
    on the index of ``queries``. Photos are matched by ``image_path``."""
    out = pd.DataFrame(
        {c: np.nan for c in ("x1", "y1", "x2", "y2", "score", "iou")}, index=queries.index
    )
    by_path = {p: g for p, g in boxes.groupby("image_path", sort=False)}
    for path, group in queries.groupby("image_path", sort=False):
        det = by_path.get(path)
        if det is None or det.empty:
            continue
        gt = group[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)  # (Q, 4)
        db = det[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)  # (D, 4)
        scores = det["score"].to_numpy(np.float64)
        iou = box_iou(gt[:, None, :], db[None, :, :])  # (Q, D)
        for qi, idx in enumerate(group.index):
            ok = np.flatnonzero(iou[qi] >= match_iou)
            if len(ok) == 0:
                continue
            best = ok[np.argmax(scores[ok])]
            out.loc[idx, ["x1", "y1", "x2", "y2"]] = db[best]
            out.loc[idx, ["score", "iou"]] = (scores[best], iou[qi, best])
    return out


def category_accuracy(
    ranked_labels: np.ndarray,
    query_labels: np.ndarray,
    ks: Sequence[int],
    valid: np.ndarray | None = None,
) -> dict[int, float]:
    """Acc@k: the fraction of queries with a gallery item of their class in the first k.

    ``ranked_labels`` (Q, K) are the classes of each query's results in rank order
    (-1 = no result); ``valid`` (Q,) False marks queries that count as misses (no box)."""
    ranked_labels = np.asarray(ranked_labels)
    query_labels = np.asarray(query_labels)
    if len(query_labels) == 0:
        raise ValueError("no queries to score")
    hits = ranked_labels == query_labels[:, None]  # (Q, K)
    if valid is not None:
        hits &= np.asarray(valid, dtype=bool)[:, None]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), np.iinfo(np.int64).max)
    return {int(k): float((first < k).mean()) for k in ks}


def evaluate_category_retrieval(
    gt_items: pd.DataFrame,
    query_rows: pd.DataFrame,
    gallery_rows: pd.DataFrame,
    ranking: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
) -> RetrievalScores:
    """Score a ranking by the category rule (module docstring).

    ``gt_items``: the split's items (the denominator: its user items); ``query_rows``: the
    boxes that were searched, each with the ``item_uid`` of the ground-truth query it
    answers (at most one row per query); ``gallery_rows``: the gallery, with
    ``category_id``; ``ranking`` (len(query_rows), K): gallery row positions, -1 = none.
    """
    queries = category_queries(gt_items)
    if queries.empty:
        raise ValueError("no queries to score: the split has no user items")
    if query_rows["item_uid"].duplicated().any():
        raise ValueError("two query rows answer the same ground-truth query")
    position = pd.Series(np.arange(len(query_rows)), index=query_rows["item_uid"].to_numpy())
    row_of = position.reindex(queries["item_uid"].to_numpy())  # NaN: no box answered it
    unknown = set(query_rows["item_uid"]) - set(queries["item_uid"])
    if unknown:
        raise ValueError(f"query rows answer items that are not queries: {sorted(unknown)[:3]}")
    valid = row_of.notna().to_numpy()
    k = ranking.shape[1] if ranking.ndim == 2 else 0
    ranked = np.full((len(queries), max(k, 1)), -1, dtype=np.int64)
    g_labels = gallery_rows["category_id"].to_numpy(np.int64)
    if valid.any() and k:
        rows = ranking[row_of[valid].to_numpy(np.int64)]  # (V, K)
        ranked[valid] = np.where(rows >= 0, g_labels[np.clip(rows, 0, None)], -1)
    q_labels = queries["category_id"].to_numpy(np.int64)
    accuracy = category_accuracy(ranked, q_labels, ks, valid)
    hits = (ranked == q_labels[:, None]) & valid[:, None]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1.0, np.nan)
    details = pd.DataFrame(
        {
            "item_uid": queries["item_uid"],
            "image_id": queries["image_id"],
            "item_index": queries["item_index"],
            "category_id": q_labels,
            "category_name": queries["category_name"],
            "detection": pd.array(np.where(valid, row_of.fillna(-1), -1), dtype="Int64"),
            "first_hit_rank": first,
            # the class of the first result (-1: no box answered the query, or no result)
            "top1_category_id": np.where(valid, ranked[:, 0], -1),
        }
    )
    details.loc[~valid, "detection"] = pd.NA
    return RetrievalScores(
        accuracy=accuracy, n_queries=len(queries), n_detected=int(valid.sum()), details=details
    )
