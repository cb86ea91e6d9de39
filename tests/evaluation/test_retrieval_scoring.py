"""Hand-made cases for each DeepFashion2 scoring rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.evaluation import (
    SUBMISSION_COLUMNS,
    GroundTruthError,
    SubmissionError,
    box_iou,
    evaluate_retrieval,
)

BOX = [0.0, 0.0, 10.0, 10.0]
FAR = [100.0, 100.0, 110.0, 110.0]


def item(image_id, source, pair_id, style, category_id, box, item_index=1):
    x1, y1, x2, y2 = box
    return dict(
        image_id=image_id,
        source=source,
        pair_id=pair_id,
        style=style,
        category_id=category_id,
        x1=x1,
        y1=y1,
        x2=x2,
        y2=y2,
        item_index=item_index,
    )


@pytest.fixture
def gt() -> pd.DataFrame:
    return pd.DataFrame(
        [
            # query image 1 (pair 10): a style-1 top and a style-0 item beside it
            item(1, "user", 10, 1, 1, BOX, 1),
            item(1, "user", 10, 0, 2, [20, 20, 30, 30], 2),
            # query image 2 (pair 20): one query item, never detected in most tests
            item(2, "user", 20, 1, 3, BOX, 1),
            # gallery
            item(100, "shop", 10, 1, 1, BOX),  # the correct item of image 1's top
            item(101, "shop", 10, 2, 1, BOX),  # same pair, other style: wrong
            item(102, "shop", 11, 1, 1, BOX),  # other pair: wrong
            item(200, "shop", 20, 1, 3, BOX),  # the correct item of image 2's item
        ]
    )


def det(image_id, box, cls, score, gallery_ids, gallery_boxes=None):
    gallery_boxes = gallery_boxes or [BOX] * len(gallery_ids)
    return dict(
        query_image_id=image_id,
        query_bbox=list(box),
        query_cls=cls,
        query_score=score,
        gallery_image_id=list(gallery_ids),
        gallery_bbox=[list(b) for b in gallery_boxes],
    )


def pad20(ids):
    return list(ids) + [102] * (20 - len(ids))


def score(gt, dets, ks=(1, 5, 10, 15, 20)):
    return evaluate_retrieval(gt, pd.DataFrame(dets), ks=ks)


def test_hit_rank_and_undetected_image_counts_as_miss(gt):
    s = score(gt, [det(1, BOX, 1, 0.9, pad20([102, 101, 100]))])
    assert s.n_queries == 2  # image 2's item has no detection but counts
    assert s.n_detected == 1
    assert s.accuracy == {1: 0.0, 5: 0.5, 10: 0.5, 15: 0.5, 20: 0.5}
    d = s.details.set_index("image_id")
    assert d.loc[1, "first_hit_rank"] == 3
    assert d.loc[1, "detection"] == 0
    assert pd.isna(d.loc[2, "detection"]) and np.isnan(d.loc[2, "first_hit_rank"])


def test_style_zero_item_absorbs_detection(gt):
    # the box overlaps the style-0 item most, so the style-1 top gets no query
    s = score(gt, [det(1, [19, 19, 30, 30], 1, 0.9, pad20([100]))])
    assert s.accuracy[20] == 0.0
    assert s.n_detected == 0


def test_wrong_category_detection_ignored(gt):
    wrong = det(1, BOX, 2, 0.99, pad20([100]))  # right box, wrong class
    assert score(gt, [wrong]).accuracy[1] == 0.0
    right_lower = det(1, BOX, 1, 0.1, pad20([100]))
    s = score(gt, [wrong, right_lower])
    assert s.accuracy[1] == 0.5
    assert s.details.loc[0, "detection"] == 1


def test_highest_score_chosen_among_duplicates(gt):
    good = det(1, BOX, 1, 0.5, pad20([100]))
    bad = det(1, [0, 0, 9, 9], 1, 0.9, pad20([102]))
    assert score(gt, [good, bad]).accuracy[20] == 0.0
    bad["query_score"] = 0.4
    assert score(gt, [good, bad]).accuracy[1] == 0.5
    # equal scores: the earliest record wins (np.argmax in the official script)
    bad["query_score"] = 0.5
    assert score(gt, [good, bad]).accuracy[1] == 0.5
    assert score(gt, [bad, good]).accuracy[20] == 0.0


def test_zero_overlap_detection_goes_to_first_item(gt):
    # no overlap with any item: argmax of all-zero IoUs is the first item (item_index 1)
    s = score(gt, [det(1, FAR, 1, 0.9, pad20([100]))])
    assert s.accuracy[1] == 0.5
    # the rule follows item_index, not the row order of the table
    s = score(gt.iloc[::-1], [det(1, FAR, 1, 0.9, pad20([100]))])
    assert s.accuracy[1] == 0.5
    # a detection on an image without query items is ignored
    assert score(gt, [det(999, BOX, 1, 0.9, pad20([100]))]).n_detected == 0


@pytest.mark.parametrize(
    ("gallery_box", "is_hit"),
    [
        ([0, 0, 10, 5], True),  # IoU exactly 0.5
        ([0, 0, 10, 4.9], False),  # IoU 0.49
        ([0, 0, 10, 10], True),
        ([50, 50, 60, 60], False),
    ],
)
def test_gallery_box_iou_threshold(gt, gallery_box, is_hit):
    s = score(gt, [det(1, BOX, 1, 0.9, [100] * 20, [gallery_box] * 20)])
    assert s.accuracy[1] == (0.5 if is_hit else 0.0)


def test_correct_pair_wrong_style_is_not_a_hit(gt):
    assert score(gt, [det(1, BOX, 1, 0.9, [101] * 20)]).accuracy[20] == 0.0
    assert score(gt, [det(1, BOX, 1, 0.9, [102] * 20)]).accuracy[20] == 0.0


def test_both_queries_hit(gt):
    dets = [det(1, BOX, 1, 0.9, pad20([100])), det(2, BOX, 3, 0.8, pad20([101, 200]))]
    s = score(gt, dets)
    assert s.accuracy[1] == 0.5 and s.accuracy[5] == 1.0
    assert s.as_dict()["acc@5"] == 1.0 and s.as_dict()["n_queries"] == 2


def test_short_gallery_lists_are_scored_on_their_entries(gt):
    s = score(gt, [det(1, BOX, 1, 0.9, [102, 100])])
    assert s.accuracy == {1: 0.0, 5: 0.5, 10: 0.5, 15: 0.5, 20: 0.5}


def test_accuracy_is_monotone_in_k():
    rng = np.random.default_rng(0)
    rows, dets = [], []
    for img in range(30):
        rows.append(item(img, "user", img % 7, 1, 1, BOX, 1))
    for img in range(100, 160):
        rows.append(item(img, "shop", img % 7, 1, 1, BOX, 1))
    for img in range(30):
        dets.append(det(img, BOX, 1, 0.5, rng.integers(100, 160, size=20).tolist()))
    s = evaluate_retrieval(pd.DataFrame(rows), pd.DataFrame(dets), ks=range(1, 21))
    acc = [s.accuracy[k] for k in range(1, 21)]
    assert all(a <= b for a, b in zip(acc, acc[1:], strict=False))
    assert 0 < acc[0] < acc[-1] <= 1


def test_box_iou_matches_hand_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], float)
    np.testing.assert_allclose(box_iou(a, b), [50 / 150, 0.0, 0.0])


def test_bad_inputs_raise_with_clear_messages(gt):
    with pytest.raises(GroundTruthError, match="lacks columns"):
        evaluate_retrieval(gt.drop(columns="style"), pd.DataFrame([det(1, BOX, 1, 1, [100])]))
    with pytest.raises(GroundTruthError, match="source"):
        evaluate_retrieval(gt.assign(source="consumer"), pd.DataFrame([det(1, BOX, 1, 1, [100])]))
    bad = det(1, BOX, 1, 0.9, [100, 100], [BOX])
    with pytest.raises(SubmissionError, match="record 0"):
        evaluate_retrieval(gt, pd.DataFrame([bad]))
    with pytest.raises(SubmissionError, match="lacks columns"):
        evaluate_retrieval(gt, pd.DataFrame([det(1, BOX, 1, 1, [100])]).drop(columns="query_cls"))


def test_empty_submission_scores_zero(gt):
    """No records at all: every query item is a miss (it used to raise IndexError)."""
    s = evaluate_retrieval(gt, pd.DataFrame(columns=list(SUBMISSION_COLUMNS)))
    assert s.accuracy == {1: 0.0, 5: 0.0, 10: 0.0, 15: 0.0, 20: 0.0}
    assert s.n_queries == 2 and s.n_detected == 0
    assert s.details["detection"].isna().all() and s.details["query_score"].isna().all()
