"""The category protocol (clothes_retrieval.evaluation.category) against plain loops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.evaluation import (
    category_accuracy,
    evaluate_category_retrieval,
    match_detections,
)


def _slow_accuracy(ranked, labels, k, valid=None):
    hits = 0
    for q in range(len(labels)):
        if valid is not None and not valid[q]:
            continue
        if any(ranked[q][j] == labels[q] for j in range(min(k, len(ranked[q])))):
            hits += 1
    return hits / len(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_category_accuracy_matches_a_plain_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ranked = rng.integers(-1, 5, size=(40, 12))
    labels = rng.integers(1, 5, size=40)
    valid = rng.random(40) > 0.3
    ks = (1, 5, 10, 20)
    got = category_accuracy(ranked, labels, ks)
    got_valid = category_accuracy(ranked, labels, ks, valid)
    for k in ks:
        assert got[k] == pytest.approx(_slow_accuracy(ranked, labels, k))
        assert got_valid[k] == pytest.approx(_slow_accuracy(ranked, labels, k, valid))
    assert got[1] <= got[5] <= got[10] <= got[20]


def test_category_accuracy_rejects_no_queries() -> None:
    with pytest.raises(ValueError, match="no queries"):
        category_accuracy(np.zeros((0, 3)), np.zeros(0), (1,))


def test_match_detections_takes_the_best_scored_box_above_the_iou() -> None:
    queries = pd.DataFrame(
        {
            "image_path": ["a.jpg", "a.jpg", "b.jpg", "c.jpg"],
            "x1": [0.0, 50.0, 0.0, 0.0],
            "y1": [0.0, 50.0, 0.0, 0.0],
            "x2": [10.0, 60.0, 10.0, 10.0],
            "y2": [10.0, 60.0, 10.0, 10.0],
        },
        index=[10, 11, 12, 13],
    )
    boxes = pd.DataFrame(
        {
            "image_path": ["a.jpg", "a.jpg", "a.jpg", "b.jpg"],
            "x1": [0.0, 1.0, 50.0, 5.0],
            "y1": [0.0, 0.0, 50.0, 5.0],
            "x2": [10.0, 10.0, 59.0, 15.0],
            "y2": [10.0, 10.0, 60.0, 15.0],
            "score": [0.3, 0.9, 0.5, 0.99],
        }
    )
    m = match_detections(queries, boxes, 0.5)
    assert list(m.index) == [10, 11, 12, 13]
    # query 10: both a.jpg boxes overlap; the higher score (0.9) answers, not the exact box
    assert m.loc[10, "score"] == 0.9 and m.loc[10, "x1"] == 1.0
    assert m.loc[11, "score"] == 0.5 and m.loc[11, "iou"] == pytest.approx(0.9)
    # b.jpg's box has IoU 25/175 < 0.5: no match; c.jpg has no boxes at all
    assert m.loc[[12, 13], "x1"].isna().all()


def _random_split(rng: np.random.Generator, n_queries: int, n_gallery: int, n_classes: int):
    """A split's items: user items (queries) and shop items (gallery), random classes."""
    rows = []
    for i in range(n_queries):
        rows.append(("user", 100 + i // 2, i % 2 + 1, int(rng.integers(1, n_classes + 1))))
    for j in range(n_gallery):
        rows.append(("shop", 1 + j, 1, int(rng.integers(1, n_classes + 1))))
    items = pd.DataFrame(rows, columns=["source", "image_id", "item_index", "category_id"])
    items["item_uid"] = [f"d/{s}/{i}/{k}" for s, i, k, _ in rows]
    items["category_name"] = "c" + items["category_id"].astype(str)
    return items


def _plain_scores(items, query_rows, gallery_rows, ranking, ks):
    """The rule read literally: for each ground-truth query, find the row answering it, and
    look at the classes of its first k results."""
    users = items[items["source"] == "user"]
    out = {}
    for k in ks:
        hits = 0
        for _, q in users.iterrows():
            answering = [
                r for r in range(len(query_rows)) if query_rows["item_uid"].iloc[r] == q["item_uid"]
            ]
            if not answering:
                continue
            row = ranking[answering[0]]
            classes = [gallery_rows["category_id"].iloc[g] for g in row[:k] if g >= 0]
            hits += q["category_id"] in classes
        out[k] = hits / len(users)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_category_scores_match_a_plain_loop_on_random_rankings(seed: int) -> None:
    rng = np.random.default_rng(seed)
    items = _random_split(rng, 30, 25, 4)
    users = items[items["source"] == "user"]
    gallery = items[items["source"] == "shop"].reset_index(drop=True)
    # Some queries unanswered (no matched box), answered ones in a shuffled order.
    answered = users.sample(frac=0.7, random_state=seed).reset_index(drop=True)
    ranking = np.stack([rng.permutation(len(gallery))[:20] for _ in range(len(answered))])
    ranking[rng.random(ranking.shape) < 0.05] = -1  # a few empty slots
    ks = (1, 5, 10, 20)
    scores = evaluate_category_retrieval(items, answered, gallery, ranking, ks)
    expected = _plain_scores(items, answered, gallery, ranking, ks)
    assert scores.accuracy == pytest.approx(expected)
    assert scores.n_queries == len(users) and scores.n_detected == len(answered)
    # every unanswered query is a miss in the details
    missing = ~users["item_uid"].isin(answered["item_uid"])
    details = scores.details.set_index("item_uid")
    assert details.loc[users.loc[missing, "item_uid"], "detection"].isna().all()
    # the first result's class, read literally; -1 when no row answers the query
    for uid, top1 in details["top1_category_id"].items():
        row = answered.index[answered["item_uid"] == uid]
        first = ranking[row[0], 0] if len(row) else -1
        assert top1 == (gallery["category_id"].iloc[first] if first >= 0 else -1)


def test_category_scores_refuse_rows_that_answer_no_query() -> None:
    items = _random_split(np.random.default_rng(0), 4, 3, 2)
    gallery = items[items["source"] == "shop"].reset_index(drop=True)
    stray = items[items["source"] == "user"].head(1).assign(item_uid="nobody")
    with pytest.raises(ValueError, match="not queries"):
        evaluate_category_retrieval(items, stray, gallery, np.zeros((1, 3), dtype=int))
