"""Table 5's ablation table.

The AP50 of each row is checked against pycocotools' ``COCOeval`` run here, directly, on
the boxes that row stands for: the first detector's own boxes, WBF over the first k
detectors (with the config's weights and thresholds), plain per-label NMS over all.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from clothes_retrieval.detection.metrics import coco_metrics
from clothes_retrieval.fusion import FusionConfig, fuse_detections, fusion_ablation
from tests.fusion.tables import random_detections, write_coco

DETECTORS = ["atss", "cascade", "centernet", "gfl"]


def test_ablation_table(tmp_path):
    rng = np.random.default_rng(2)
    detectors = ["atss", "cascade", "centernet"]
    table = random_detections(rng, 6, detectors, per_detector=8)
    # Ground truth: one item per image, near the image's highest-scored box.
    firsts = table.sort_values("score", ascending=False).drop_duplicates("image_id")
    images = table.drop_duplicates("image_id")[["image_id", "image_width", "image_height"]]
    gt = write_coco(
        tmp_path / "gt.json",
        [tuple(int(v) for v in r) for r in images.to_numpy()],
        [
            (int(r.image_id), int(r.category_id), r.x1 + 2, r.y1, r.x2, r.y2 - 3)
            for r in firsts.itertuples()
        ],
    )
    result = fusion_ablation(table, FusionConfig(detectors=detectors), gt)
    assert list(result.columns) == ["boxes", "method", "num_detectors", "AP50", "num_detections"]
    assert result["boxes"].tolist() == ["atss", "+ cascade", "+ centernet", "nms over all 3"]
    assert result["method"].tolist() == ["none", "wbf", "wbf", "nms"]
    assert result["num_detectors"].tolist() == [1, 2, 3, 3]
    own = coco_metrics(table[table["detector"] == "atss"], gt)
    assert result["AP50"].iloc[0] == own["AP50"]
    assert result["num_detections"].iloc[0] == own["num_detections"]
    assert result["AP50"].between(0, 1).all()


def cocoeval_ap50(gt_path: Path, boxes: pd.DataFrame) -> float:
    """AP at IoU 0.5 of ``boxes`` (pixels, x1 y1 x2 y2), by pycocotools, nothing else."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        results = [
            {
                "image_id": int(r.image_id),
                "category_id": int(r.category_id),
                "bbox": [r.x1, r.y1, r.x2 - r.x1, r.y2 - r.y1],
                "score": float(r.score),
            }
            for r in boxes.itertuples()
        ]
        ev = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1])


def ablation_case(tmp_path: Path, seed: int) -> tuple[pd.DataFrame, Path]:
    """Four detectors on 12 images; 1-3 ground-truth items per image near its boxes."""
    rng = np.random.default_rng(seed)
    table = random_detections(rng, 12, DETECTORS, per_detector=10)
    images = table.drop_duplicates("image_id")[["image_id", "image_width", "image_height"]]
    anns = []
    for image_id, boxes in table.groupby("image_id"):
        for r in boxes.sample(int(rng.integers(1, 4)), random_state=seed).itertuples():
            d = rng.normal(0, 4, 4)  # the item lies near a detected box, not exactly on it
            anns.append((int(image_id), int(rng.integers(1, 4)),
                         r.x1 + d[0], r.y1 + d[1], r.x2 + d[2] + 5, r.y2 + d[3] + 5))  # fmt: skip
    gt = write_coco(
        tmp_path / f"gt{seed}.json", [tuple(int(v) for v in r) for r in images.to_numpy()], anns
    )
    return table, gt


CONFIGS = {
    "defaults": {},
    "tuned": dict(weights=[3.0, 1.0, 2.0, 1.0], iou_thr=0.45, skip_box_thr=0.2, conf_type="max"),
    "vote": dict(label_mode="vote", iou_thr=0.6),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("settings", list(CONFIGS), ids=list(CONFIGS))
def test_ablation_ap50_equals_cocoeval_on_the_rows_boxes(tmp_path, seed, settings):
    table, gt = ablation_case(tmp_path, seed)
    extra = CONFIGS[settings]
    result = fusion_ablation(table, FusionConfig(detectors=DETECTORS, **extra), gt)

    # Every row's boxes, built here from explicit configs (not config.for_detectors).
    weights = extra.get("weights")
    rows = [table[table["detector"] == DETECTORS[0]]]
    for k in range(2, len(DETECTORS) + 1):
        subset = dict(extra, weights=weights[:k] if weights else None)
        config = FusionConfig(method="wbf", detectors=DETECTORS[:k], **subset)
        rows.append(fuse_detections(table, config, progress=False))
    nms = dict(extra, label_mode="per_label")  # NMS has no vote mode: per label
    rows.append(fuse_detections(table, FusionConfig(method="nms", detectors=DETECTORS, **nms),
                                progress=False))  # fmt: skip

    expected = [cocoeval_ap50(gt, boxes) for boxes in rows]
    np.testing.assert_allclose(result["AP50"].to_numpy(), expected, rtol=0, atol=1e-9)
    assert result["num_detections"].tolist() == [len(boxes) for boxes in rows]
    assert result["num_detectors"].tolist() == [1, 2, 3, 4, 4]
    # The rows differ, so a row computed over the wrong boxes would show.
    assert len({round(v, 9) for v in expected}) >= 3, expected
