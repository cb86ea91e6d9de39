"""Our WBF kernel: hand-computed fused boxes, and bit-for-bit ensemble-boxes' output."""

from __future__ import annotations

import warnings

import ensemble_boxes
import numpy as np
import pytest

from clothes_retrieval.fusion.wbf import vote_labels, wbf_batch, weighted_boxes_fusion

A = [0.10, 0.10, 0.50, 0.50]
B = [0.12, 0.10, 0.52, 0.50]  # IoU with A: 0.152 / 0.168 = 0.905


def two_detectors(score_a=0.9, score_b=0.6, label_a=1, label_b=1):
    return (
        [np.array([A]), np.array([B])],
        [np.array([score_a]), np.array([score_b])],
        [
            np.array([label_a]),
            np.array([label_b]),
        ],
    )


def test_two_boxes_fuse_to_score_weighted_mean():
    boxes, scores, labels, cluster = weighted_boxes_fusion(*two_detectors())
    # (0.9 * A + 0.6 * B) / 1.5; score: mean 0.75, times min(2 detectors, 2 boxes) / 2
    np.testing.assert_allclose(boxes, [[0.108, 0.10, 0.508, 0.50]], atol=1e-7)
    np.testing.assert_allclose(scores, [0.75], atol=1e-7)
    assert labels.tolist() == [1.0]
    assert cluster.tolist() == [0, 0]


def test_weights():
    boxes, scores, _, _ = weighted_boxes_fusion(*two_detectors(), weights=[2, 1])
    # s = 1.8 and 0.6: x1 = (0.18 + 0.072) / 2.4 = 0.105; score 2.4 / 2 * 2 / (2 + 1) = 0.8
    np.testing.assert_allclose(boxes, [[0.105, 0.10, 0.505, 0.50]], atol=1e-7)
    np.testing.assert_allclose(scores, [0.8], atol=1e-7)


@pytest.mark.parametrize(
    ("conf_type", "expected"),
    [
        ("avg", 0.75),
        ("max", 0.9),
        ("box_and_model_avg", 0.75),  # (0.75 * 2 / 2) * 2 / 2
        ("absent_model_aware_avg", 0.75),  # 0.75 * 2 / (2 + 0 absent)
    ],
)
def test_conf_types(conf_type, expected):
    _, scores, _, _ = weighted_boxes_fusion(*two_detectors(), conf_type=conf_type)
    np.testing.assert_allclose(scores, [expected], atol=1e-7)


def test_box_from_one_detector_of_two_keeps_half_its_score():
    bl, sl, ll = two_detectors()
    boxes, scores, _, _ = weighted_boxes_fusion([bl[0], np.zeros((0, 4))], [sl[0], []], [ll[0], []])
    np.testing.assert_array_equal(boxes, [A])  # a lone box is kept as given
    np.testing.assert_allclose(scores, [0.45])


def test_per_label_keeps_disagreeing_labels_apart():
    boxes, scores, labels, cluster = weighted_boxes_fusion(*two_detectors(label_b=2))
    assert len(boxes) == 2
    assert labels.tolist() == [1.0, 2.0]  # by descending score: 0.9 / 2, then 0.6 / 2
    np.testing.assert_allclose(scores, [0.45, 0.3])
    assert cluster.tolist() == [0, 1]


def three_boxes(scores, labels):
    boxes = [np.array([A]), np.array([B]), np.array([[0.10, 0.12, 0.50, 0.52]])]
    return (
        np.concatenate(boxes),
        np.array(scores, dtype=float),
        np.array(labels),
        np.array([0, 1, 2]),
        np.zeros(3, dtype=np.int64),
    )


@pytest.mark.parametrize(
    ("scores", "expected_label"),
    [
        ((0.5, 0.4, 0.8), 1),  # label 1: 0.9 > label 2: 0.8
        ((0.3, 0.4, 0.8), 2),  # label 1: 0.7 < 0.8
        ((0.4, 0.4, 0.8), 2),  # tie 0.8 = 0.8: the top-scoring box's label
    ],
)
def test_label_vote(scores, expected_label):
    boxes, s, labels, models, groups = three_boxes(scores, [1, 1, 2])
    fused = wbf_batch(boxes, s, np.zeros(3), models, groups, weights=[1, 1, 1])
    assert len(fused) == 1  # all three boxes in one cluster, whatever their labels
    assert fused.cluster.tolist() == [0, 0, 0]
    assert vote_labels(fused, labels, s, models, [1, 1, 1]).tolist() == [expected_label]
    np.testing.assert_allclose(fused.scores, [sum(scores) / 3])  # mean * min(3, 3) / 3


def test_label_vote_counts_detector_weights():
    boxes, s, labels, models, groups = three_boxes((0.5, 0.4, 0.8), [1, 1, 2])
    weights = [1, 1, 2]  # label 2's detector weighs double: 1.6 > 0.9
    fused = wbf_batch(boxes, s, np.zeros(3), models, groups, weights=weights)
    assert vote_labels(fused, labels, s, models, weights).tolist() == [2]


def random_image(rng, n_models, n_labels, decimals):
    n_obj = int(rng.integers(1, 4))
    lo = rng.uniform(0, 0.6, (n_obj, 2))
    objs = np.concatenate([lo, lo + rng.uniform(0.05, 0.4, (n_obj, 2))], axis=1)
    bl, sl, ll = [], [], []
    for _ in range(n_models):
        k = int(rng.integers(0, 40))
        b = objs[rng.integers(0, n_obj, k)] + rng.normal(0, 0.03, (k, 4))
        bl.append(b)  # some corners reversed or outside [0, 1]: both sides fix them
        sl.append(np.round(rng.uniform(0.01, 1, k), decimals))  # 1 decimal: many ties
        ll.append(rng.integers(1, n_labels + 1, k))
    return bl, sl, ll


@pytest.mark.parametrize("conf_type", ["avg", "max", "box_and_model_avg", "absent_model_aware_avg"])
@pytest.mark.parametrize("weighted", [False, True])
def test_identical_to_ensemble_boxes(conf_type, weighted):
    rng = np.random.default_rng(7)
    for i in range(15):
        n_models = int(rng.integers(1, 5))
        bl, sl, ll = random_image(rng, n_models, n_labels=(1, 3)[i % 2], decimals=(1, 8)[i % 2])
        weights = list(rng.uniform(0.5, 3, n_models)) if weighted else None
        kwargs = dict(weights=weights, iou_thr=(0.55, 0.4)[i % 2], skip_box_thr=0.05)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = ensemble_boxes.weighted_boxes_fusion(bl, sl, ll, conf_type=conf_type, **kwargs)
        ours = weighted_boxes_fusion(bl, sl, ll, conf_type=conf_type, **kwargs)
        for r, o in zip(ref, ours[:3], strict=True):
            np.testing.assert_array_equal(o, r)


def test_batch_of_images_equals_one_image_at_a_time():
    rng = np.random.default_rng(3)
    images = [random_image(rng, 3, n_labels=3, decimals=8) for _ in range(8)]
    boxes, scores, labels, models, groups = [], [], [], [], []
    for g, (bl, sl, ll) in enumerate(images):
        for m in range(3):
            boxes.append(bl[m])
            scores.append(sl[m])
            labels.append(ll[m])
            models.append(np.full(len(sl[m]), m))
            groups.append(np.full(len(sl[m]), 10 * g))
    fused = wbf_batch(
        np.concatenate(boxes),
        np.concatenate(scores),
        np.concatenate(labels),
        np.concatenate(models),
        np.concatenate(groups),
        weights=[1, 1, 1],
    )
    for g, (bl, sl, ll) in enumerate(images):
        b, s, lab, _ = weighted_boxes_fusion(bl, sl, ll)
        mine = fused.group == 10 * g
        np.testing.assert_array_equal(fused.boxes[mine], b)
        np.testing.assert_array_equal(fused.scores[mine], s)
        np.testing.assert_array_equal(fused.labels[mine], lab)


def test_one_class_fusion_equals_library_and_membership_rebuilds_each_box():
    """Vote mode's clustering: the library's own output with every label set to one class,
    and the recovered members of each fused box give back its coordinates."""
    rng = np.random.default_rng(11)
    for _ in range(6):
        bl, sl, ll = random_image(rng, 4, n_labels=5, decimals=8)
        bl = [np.clip(np.sort(b.reshape(-1, 2, 2), axis=1).reshape(-1, 4), 0, 1) for b in bl]
        zeros = [np.zeros(len(s)) for s in sl]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rb, rs, _ = ensemble_boxes.weighted_boxes_fusion(bl, sl, zeros)
        boxes, scores, _, cluster = weighted_boxes_fusion(bl, sl, zeros)
        np.testing.assert_array_equal(boxes, rb)
        np.testing.assert_array_equal(scores, rs)
        all_boxes, all_scores = np.concatenate(bl), np.concatenate(sl)
        for k in range(len(boxes)):
            members = cluster == k
            mean = (all_scores[members, None] * all_boxes[members]).sum(0) / all_scores[
                members
            ].sum()
            np.testing.assert_allclose(boxes[k], mean, atol=1e-6)
        assert (cluster >= 0).all()


def test_empty_and_filtered_inputs():
    empty = wbf_batch(np.zeros((0, 4)), [], [], [], [], weights=[1, 1])
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    b, s, lab, cluster = weighted_boxes_fusion(*two_detectors(), skip_box_thr=0.95)
    assert b.shape == (0, 4) and len(s) == 0 and len(lab) == 0
    assert cluster.tolist() == [-1, -1]
