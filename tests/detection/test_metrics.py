"""COCO box metrics of a detections table, against hand-computed APs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from clothes_retrieval.detection.metrics import METRIC_KEYS, coco_metrics, metrics_table

COLUMNS = ["detector", "split", "image_id", "source", "image_path", "image_width",
           "image_height", "x1", "y1", "x2", "y2", "score", "category_id"]  # fmt: skip


def write_gt(path: Path, images: list[int], anns: list[tuple]) -> Path:
    """COCO ground truth: 1000 x 1000 images; annotations (image_id, category, x1, y1, x2, y2)."""
    data = {
        "images": [
            {"id": i, "width": 1000, "height": 1000, "file_name": f"{i}.jpg"} for i in images
        ],
        "annotations": [
            {
                "id": k + 1,
                "image_id": i,
                "category_id": c,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
            for k, (i, c, x1, y1, x2, y2) in enumerate(anns)
        ],  # fmt: skip
        "categories": [{"id": c, "name": str(c), "supercategory": "clothes"} for c in range(1, 14)],
    }
    path.write_text(json.dumps(data))
    return path


def dets(rows: list[tuple]) -> pd.DataFrame:
    """Detections table from (image_id, category, x1, y1, x2, y2, score)."""
    return pd.DataFrame(
        [
            ("atss", "validation", i, "user", f"{i}.jpg", 1000, 1000, x1, y1, x2, y2, s, c)
            for i, c, x1, y1, x2, y2, s in rows
        ],
        columns=COLUMNS,
    ).astype({"image_id": "int64", "category_id": "int64", "x1": float, "y1": float,
              "x2": float, "y2": float, "score": float})  # fmt: skip


# One small (20 x 20 = 400 < 32²), one medium (50 x 50), one large (200 x 200) item.
GT_ITEMS = [(1, 1, 10, 10, 30, 30), (1, 2, 100, 100, 150, 150), (2, 3, 300, 300, 500, 500)]


def test_perfect_detections_score_one(tmp_path):
    gt = write_gt(tmp_path / "gt.json", [1, 2], GT_ITEMS)
    result = coco_metrics(dets([(*a, 0.9) for a in GT_ITEMS]), gt)
    assert [result[k] for k in METRIC_KEYS] == pytest.approx([1.0] * len(METRIC_KEYS))
    assert result["num_detections"] == 3 and result["num_ignored"] == 0


def test_false_positive_above_a_true_positive(tmp_path):
    """One large item; a false positive scored 0.9, then the true one at IoU 0.625.

    Ranked: FP, TP -> precision 0, 1/2 at recall 0, 1; interpolated (max to the right):
    0.5 at every one of COCO's 101 recall points, so AP = 0.5 at the IoU thresholds the TP
    passes (0.50, 0.55, 0.60 < 0.625) and 0 at the seven from 0.65 on: AP = 3 x 0.5 / 10.
    (0.625 rather than 0.6 keeps the IoU off a threshold, where rounding would decide.)
    """
    gt = write_gt(tmp_path / "gt.json", [1], [(1, 1, 0, 0, 100, 100)])
    rows = [(1, 1, 500, 500, 600, 600, 0.9), (1, 1, 0, 0, 100, 62.5, 0.8)]  # IoU 6250 / 10000
    result = coco_metrics(dets(rows), gt)
    assert result["AP"] == pytest.approx(0.15)
    assert result["AP50"] == pytest.approx(0.5)
    assert result["AP75"] == 0.0
    assert result["APl"] == pytest.approx(0.15)
    assert math.isnan(result["APs"]) and math.isnan(result["APm"])  # no such items: undefined


def test_no_detections_is_ap_zero_and_says_so(tmp_path):
    gt = write_gt(tmp_path / "gt.json", [1, 2], GT_ITEMS)
    result = coco_metrics(dets([]), gt)
    assert result["AP"] == 0.0 and result["AP50"] == 0.0
    assert result["num_detections"] == 0


def test_detections_off_the_ground_truth_images_are_ignored(tmp_path):
    gt = write_gt(tmp_path / "gt.json", [1, 2], GT_ITEMS)
    rows = [(*a, 0.9) for a in GT_ITEMS] + [(99, 1, 0, 0, 10, 10, 0.99)]
    result = coco_metrics(dets(rows), gt)
    assert result["AP"] == pytest.approx(1.0)
    assert result["num_detections"] == 3 and result["num_ignored"] == 1


def test_bad_arguments(tmp_path):
    gt = write_gt(tmp_path / "gt.json", [1], GT_ITEMS[:1])
    with pytest.raises(ValueError, match="segm"):
        coco_metrics(dets([]), gt, iou_type="segm")
    with pytest.raises(FileNotFoundError):
        coco_metrics(dets([]), tmp_path / "missing.json")


def test_metrics_table_layout():
    results = {
        "ATSS": {"AP": 0.728, "AP50": 0.836, "AP75": 0.806, "APs": 0.527, "APm": 0.532,
                 "APl": 0.73, "num_detections": 10},
        "CenterNet": {"AP": 0.704, "AP50": 0.814, "AP75": 0.779, "APs": 0.301, "APm": 0.443,
                      "APl": 0.708, "num_detections": 10},
    }  # fmt: skip
    table = metrics_table(results)
    assert list(table.columns) == ["model", "AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert table["model"].tolist() == ["ATSS", "CenterNet"]
    assert table.loc[0, "AP50"] == 0.836
    assert metrics_table(results, percent=True).loc[0, "AP"] == pytest.approx(72.8)
    with pytest.raises(KeyError, match="AP75"):
        metrics_table({"x": {"AP": 0.1}})
