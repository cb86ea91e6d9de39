"""COCO box metrics of a detections table, against hand-computed APs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
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


# ---------------------------------------------------------------------------------------
# Against a plain-Python COCO AP, on random detections (no pycocotools in the reference)
# ---------------------------------------------------------------------------------------

IOU_THRS = np.linspace(0.5, 0.95, 10)  # COCO's ten IoU thresholds (the same float values)
REC_THRS = np.linspace(0.0, 1.0, 101)  # its 101 recall points
# Area ranges on the ground truth's "area" (a detection's: w * h). Both bounds inclusive,
# as COCOeval tests them (an area of exactly 32² counts as small and as medium).
AREAS = {"all": (0, 1e10), "s": (0, 32**2), "m": (32**2, 96**2), "l": (96**2, 1e10)}


def box_iou(d: tuple, g: tuple) -> float:
    iw = min(d[2], g[2]) - max(d[0], g[0])
    ih = min(d[3], g[3]) - max(d[1], g[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((d[2] - d[0]) * (d[3] - d[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter)


def area(b: tuple) -> float:
    return (b[2] - b[0]) * (b[3] - b[1])


def reference_ap(gt_anns: list[tuple], det_rows: list[tuple], area_rng: tuple, thr: float):
    """COCO AP of one IoU threshold and area range, averaged over categories; None when no
    category has ground truth in the range.

    Per image and category: detections by descending score (ties: table order), at most
    100; each takes the still-unmatched ground truth it overlaps most with IoU >= thr,
    preferring in-range items over out-of-range ones (a match to an out-of-range item is
    ignored, as is an unmatched detection outside the range). Per category, over all
    images: precision/recall in score order, precision made non-increasing from the right,
    read at the 101 recall points (0 beyond the last recall reached).
    """
    lo, hi = area_rng
    images = sorted({d[0] for d in det_rows} | {a[0] for a in gt_anns})  # images without
    # items count too: their detections are false positives
    per_category = []
    for cat in sorted({a[1] for a in gt_anns}):
        n_pos = sum(1 for a in gt_anns if a[1] == cat and lo <= area(a[2:]) <= hi)
        if n_pos == 0:
            continue
        ranked = []  # (score, is_tp) of the detections that count, image by image
        for img in images:
            gts = [a[2:] for a in gt_anns if a[0] == img and a[1] == cat]
            gts.sort(key=lambda g: not (lo <= area(g) <= hi))  # in-range first (stable)
            ignored = [not (lo <= area(g) <= hi) for g in gts]
            dts = [d for d in det_rows if d[0] == img and d[1] == cat]
            dts = sorted(dts, key=lambda d: -d[6])[:100]
            taken = [False] * len(gts)
            for d in dts:
                best, match = min(thr, 1 - 1e-10), None
                for j, g in enumerate(gts):
                    if taken[j]:
                        continue
                    if match is not None and not ignored[match] and ignored[j]:
                        break  # an in-range match beats any out-of-range item
                    v = box_iou(d[2:6], g)
                    if v >= best:
                        best, match = v, j
                if match is not None:
                    taken[match] = True
                    if not ignored[match]:
                        ranked.append((d[6], True))
                elif lo <= area(d[2:6]) <= hi:
                    ranked.append((d[6], False))
        ranked.sort(key=lambda x: -x[0])  # stable: ties keep image order
        tp = fp = 0
        precision, recall = [], []
        for _, is_tp in ranked:
            tp, fp = tp + is_tp, fp + (not is_tp)
            precision.append(tp / (tp + fp))
            recall.append(tp / n_pos)
        for i in range(len(precision) - 2, -1, -1):
            precision[i] = max(precision[i], precision[i + 1])
        at_points = []
        for r in REC_THRS:
            reached = [i for i, rc in enumerate(recall) if rc >= r]
            at_points.append(precision[reached[0]] if reached else 0.0)
        per_category.append(sum(at_points) / len(at_points))
    return sum(per_category) / len(per_category) if per_category else None


def reference_metrics(gt_anns: list[tuple], det_rows: list[tuple]) -> dict[str, float]:
    def mean_over_thresholds(area_rng, thrs):
        values = [reference_ap(gt_anns, det_rows, area_rng, t) for t in thrs]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else math.nan

    return {
        "AP": mean_over_thresholds(AREAS["all"], IOU_THRS),
        "AP50": mean_over_thresholds(AREAS["all"], IOU_THRS[:1]),
        "AP75": mean_over_thresholds(AREAS["all"], IOU_THRS[5:6]),
        "APs": mean_over_thresholds(AREAS["s"], IOU_THRS),
        "APm": mean_over_thresholds(AREAS["m"], IOU_THRS),
        "APl": mean_over_thresholds(AREAS["l"], IOU_THRS),
    }


def random_case(seed: int) -> tuple[list[tuple], list[tuple]]:
    """Items of every size on an integer grid (exact IoUs, some at a threshold exactly);
    detections: jittered copies, duplicates, false positives, shared scores; one seed has
    more than 100 detections in one image and category (COCO keeps the top 100)."""
    rng = np.random.default_rng(seed)
    gt_anns = []
    for img in range(1, 6):
        for _ in range(int(rng.integers(0, 5))):  # some images have no item
            side = int(rng.choice([8, 20, 32, 50, 96, 150, 300]))
            w, h = side, int(rng.choice([side, side // 2, max(4, side // 3)]))
            x, y = (int(v) for v in rng.integers(0, 600, 2))
            gt_anns.append((img, int(rng.integers(1, 4)), x, y, x + w, y + h))
    det_rows = []
    for a in gt_anns:
        for _ in range(int(rng.integers(0, 4))):
            w, h = a[4] - a[2], a[5] - a[3]
            d = (rng.integers(-2, 3, 4) * np.array([w, h, w, h]) / 10).round()
            box = [a[2] + d[0], a[3] + d[1], a[4] + d[2], a[5] + d[3]]
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            cat = a[1] if rng.random() < 0.8 else int(rng.integers(1, 4))
            det_rows.append((a[0], cat, *box, float(rng.choice([0.3, 0.5, 0.9, rng.random()]))))
    n_fp = 150 if seed == 0 else int(rng.integers(0, 15))
    for _ in range(n_fp):
        x, y = (int(v) for v in rng.integers(0, 600, 2))
        side = int(rng.choice([10, 40, 120]))
        img, cat = (1, 1) if seed == 0 else (int(rng.integers(1, 6)), int(rng.integers(1, 4)))
        det_rows.append((img, cat, x, y, x + side, y + side, float(rng.random())))
    return gt_anns, det_rows


@pytest.mark.parametrize("seed", range(6))
def test_coco_metrics_match_a_plain_python_coco_ap(tmp_path, seed):
    gt_anns, det_rows = random_case(seed)
    gt = write_gt(tmp_path / "gt.json", [1, 2, 3, 4, 5], gt_anns)
    result = coco_metrics(
        dets([(i, c, x1, y1, x2, y2, s) for i, c, x1, y1, x2, y2, s in det_rows]), gt
    )
    expected = reference_metrics(gt_anns, det_rows)
    for k in METRIC_KEYS:
        if math.isnan(expected[k]):
            assert math.isnan(result[k]), k
        else:
            assert result[k] == pytest.approx(expected[k], rel=0, abs=1e-12), k
    assert result["num_detections"] == len(det_rows)
