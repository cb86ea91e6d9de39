"""The table-level stage: pixels in and out, images, detectors, parallel = serial."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.fusion import DETECTION_COLUMNS, FusionConfig, fuse_detections
from clothes_retrieval.fusion import fuse as fuse_module
from tests.fusion.tables import detections_table, random_detections

W, H = 1000, 800


def two_detector_rows(label_b=1):
    return [
        {"detector": "atss", "box": [100, 80, 500, 400], "score": 0.9, "label": 1},
        {"detector": "cascade", "box": [120, 80, 520, 400], "score": 0.6, "label": label_b},
    ]


def test_fused_box_in_pixels():
    table = detections_table(two_detector_rows(), width=W, height=H)
    out = fuse_detections(table, FusionConfig(detectors=["atss", "cascade"]), progress=False)
    assert list(out.columns) == list(DETECTION_COLUMNS)
    assert len(out) == 1
    row = out.iloc[0]
    # (0.9 * box_a + 0.6 * box_b) / 1.5, in pixels; score 0.75 (see test_wbf)
    np.testing.assert_allclose(
        row[["x1", "y1", "x2", "y2"]].astype(float), [108, 80, 508, 400], atol=1e-3
    )
    assert row["score"] == pytest.approx(0.75, abs=1e-7)
    assert row["detector"] == "wbf"
    assert (row["split"], row["image_id"], row["source"]) == ("validation", 1, "user")
    assert (row["image_width"], row["image_height"]) == (W, H)
    assert out["image_id"].dtype == np.int64 and out["category_id"].dtype == np.int64


def test_label_modes():
    table = detections_table(two_detector_rows(label_b=2), width=W, height=H)
    per_label = fuse_detections(table, FusionConfig(detectors=["atss", "cascade"]), progress=False)
    assert sorted(per_label["category_id"]) == [1, 2]
    vote = fuse_detections(
        table, FusionConfig(detectors=["atss", "cascade"], label_mode="vote"), progress=False
    )
    assert vote["category_id"].tolist() == [1]  # 0.9 for label 1 beats 0.6 for label 2
    assert vote["score"].iloc[0] == pytest.approx(0.75, abs=1e-7)


def test_normalisation_round_trip():
    """One detector, non-overlapping boxes: every fused box is an input box, so pixels ->
    [0, 1] -> pixels must give the input back (to rounding)."""
    rows = [
        {"detector": "atss", "image_id": i, "width": w, "height": h, "box": box, "score": 0.5}
        for i, (w, h, box) in enumerate(
            [(640, 480, [0.5, 1.25, 200.75, 479.0]), (333, 777, [12.3, 45.6, 78.9, 701.2])],
            start=1,
        )
    ]
    table = detections_table(rows)
    out = fuse_detections(table, FusionConfig(detectors=["atss"]), progress=False)
    np.testing.assert_allclose(
        out[["x1", "y1", "x2", "y2"]].to_numpy(),
        table[["x1", "y1", "x2", "y2"]].to_numpy(),
        rtol=1e-12,
    )
    assert out["score"].tolist() == [0.5, 0.5]


def test_images_with_some_detectors_missing_still_fuse():
    rows = two_detector_rows() + [
        {"detector": "cascade", "image_id": 2, "box": [10, 10, 50, 50], "score": 0.8},
        {"detector": "other", "image_id": 3, "box": [10, 10, 50, 50], "score": 0.8},
    ]
    out = fuse_detections(
        detections_table(rows), FusionConfig(detectors=["atss", "cascade"]), progress=False
    )
    assert out["image_id"].tolist() == [1, 2]  # image 3 has only an unconfigured detector
    assert out["score"].iloc[1] == pytest.approx(0.4)  # 0.8 x 1 box / 2 detectors


def test_missing_detector_is_an_error():
    table = detections_table(two_detector_rows())
    with pytest.raises(ValueError, match="retinanet"):
        fuse_detections(table, FusionConfig(detectors=["atss", "retinanet"]), progress=False)


def test_empty_inputs():
    empty = detections_table([])
    out = fuse_detections(empty, FusionConfig(detectors=["atss"]), progress=False)
    assert out.empty and list(out.columns) == list(DETECTION_COLUMNS)
    table = detections_table(two_detector_rows())
    out = fuse_detections(
        table, FusionConfig(detectors=["atss", "cascade"], skip_box_thr=0.95), progress=False
    )
    assert out.empty and list(out.columns) == list(DETECTION_COLUMNS)
    with pytest.raises(KeyError, match="score"):
        fuse_detections(table.drop(columns="score"), FusionConfig(detectors=["atss"]))


def test_max_per_image_keeps_the_top_boxes():
    rng = np.random.default_rng(0)
    table = random_detections(rng, 4, ["a", "b"], per_detector=15)
    full = fuse_detections(table, FusionConfig(detectors=["a", "b"]), progress=False)
    top = fuse_detections(
        table, FusionConfig(detectors=["a", "b"], max_per_image=3), progress=False
    )
    expected = full.groupby("image_id", sort=True).head(3).reset_index(drop=True)
    pd.testing.assert_frame_equal(top, expected)


@pytest.mark.parametrize("method", ["nms", "soft_nms", "non_maximum_weighted"])
def test_other_methods_run(method):
    table = detections_table(two_detector_rows())
    out = fuse_detections(
        table, FusionConfig(detectors=["atss", "cascade"], method=method), progress=False
    )
    assert (out["detector"] == method).all()
    assert out["score"].is_monotonic_decreasing
    if method == "nms":  # the 0.6 box overlaps the 0.9 one (IoU 0.9): suppressed
        assert len(out) == 1 and out["score"].iloc[0] == 0.9
        np.testing.assert_allclose(out[["x1", "y1", "x2", "y2"]].iloc[0], [100, 80, 500, 400])


def test_parallel_equals_serial(monkeypatch):
    rng = np.random.default_rng(5)
    table = random_detections(rng, 24, ["a", "b", "c"], per_detector=12)
    config = FusionConfig(detectors=["a", "b", "c"], weights=[2, 1, 1], workers=1)
    serial = fuse_detections(table, config, progress=False)
    monkeypatch.setattr(fuse_module, "_MIN_POOL_BOXES", 1)
    monkeypatch.setattr(fuse_module, "_MIN_CHUNK_BOXES", 50)  # several chunks of whole images
    monkeypatch.setattr(fuse_module, "_MAX_CHUNK_BOXES", 150)
    parallel = fuse_detections(table, config.model_copy(update={"workers": 2}), progress=False)
    pd.testing.assert_frame_equal(parallel, serial)
    assert len(serial) > 24
