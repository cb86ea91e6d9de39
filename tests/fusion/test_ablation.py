"""Table 5's ablation table."""

from __future__ import annotations

import numpy as np

from clothes_retrieval.detection.metrics import coco_metrics
from clothes_retrieval.fusion import FusionConfig, fusion_ablation
from tests.fusion.tables import random_detections, write_coco


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
