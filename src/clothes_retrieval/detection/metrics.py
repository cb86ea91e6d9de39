"""COCO box metrics of a detections table (Ji et al. 2020, Table 2's AP .. APl).

Protocol: pycocotools' ``COCOeval`` with ``iouType="bbox"`` and its defaults (IoU
thresholds 0.50:0.05:0.95, 101-point interpolated precision, at most 100 detections per
image and category, area ranges small [0, 32²], medium [32², 96²], large [96², ∞) on the
ground truth's ``area``, both bounds inclusive as in pycocotools, so an area of exactly 32²
counts as small and as medium). Only the ground truth's images are evaluated: detections
on other images are ignored (and logged), as are detections of categories the ground truth
does not list.

Values are fractions in [0, 1] (the paper prints percentages: ``metrics_table`` can).
A value COCO cannot define (no ground truth in that area range: ``COCOeval`` reports -1)
is NaN, never a number. No detections at all is a legitimate AP of 0, and the result says
so in ``num_detections``.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["METRIC_KEYS", "coco_metrics", "load_coco", "metrics_table"]

log = logging.getLogger(__name__)

# COCOeval.stats[0:6], in order.
METRIC_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_REQUIRED = ("image_id", "x1", "y1", "x2", "y2", "score", "category_id")


def load_coco(coco_gt: str | Path | COCO) -> COCO:
    """A pycocotools ``COCO`` from a path (or the object itself), without its prints."""
    if isinstance(coco_gt, COCO):
        return coco_gt
    path = Path(coco_gt)
    if not path.is_file():
        raise FileNotFoundError(f"COCO ground-truth file not found: {path}")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def coco_metrics(
    detections: pd.DataFrame, coco_gt: str | Path | COCO, *, iou_type: str = "bbox"
) -> dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl (fractions) of ``detections`` against ``coco_gt``.

    Also returns ``num_detections`` (the detections evaluated, on ground-truth images)
    and ``num_ignored`` (detections on images the ground truth does not contain).
    """
    if iou_type != "bbox":
        raise ValueError(
            f"iou_type {iou_type!r} is not supported: a detections table has boxes, not masks"
        )
    missing = [c for c in _REQUIRED if c not in detections.columns]
    if missing:
        raise KeyError(f"detections table lacks columns {missing}")
    gt = load_coco(coco_gt)
    gt_images = np.array(sorted(gt.getImgIds()), dtype=np.int64)
    if len(gt_images) == 0:
        raise ValueError("the COCO ground truth has no images: nothing to evaluate against")

    image_id = detections["image_id"].to_numpy(dtype=np.int64)
    on_gt = np.isin(image_id, gt_images)
    n_ignored = int((~on_gt).sum())
    if n_ignored:
        log.warning(
            "coco_metrics: %d of %d detections lie on %d images absent from the ground "
            "truth; ignored",
            n_ignored,
            len(image_id),
            len(np.unique(image_id[~on_gt])),
        )
    det = detections.loc[on_gt]
    x1 = det["x1"].to_numpy(dtype=np.float64)
    y1 = det["y1"].to_numpy(dtype=np.float64)
    rows = np.stack(
        [
            image_id[on_gt].astype(np.float64),
            x1,
            y1,
            det["x2"].to_numpy(dtype=np.float64) - x1,
            det["y2"].to_numpy(dtype=np.float64) - y1,
            det["score"].to_numpy(dtype=np.float64),
            det["category_id"].to_numpy(dtype=np.float64),
        ],
        axis=1,
    )  # (N, 7): image_id, x, y, w, h, score, category: COCO's numpy results format
    if not np.isfinite(rows).all():
        raise ValueError("detections have NaN or infinite coordinates or scores")

    log_lines = io.StringIO()
    with contextlib.redirect_stdout(log_lines):  # pycocotools prints; we log
        if len(rows):
            dt = gt.loadRes(rows)
        else:  # loadRes cannot take an empty result list: an empty result set, by hand
            dt = COCO()
            dt.dataset = {
                "images": list(gt.dataset["images"]),
                "categories": list(gt.dataset.get("categories", [])),
                "annotations": [],
            }
            dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = [int(i) for i in gt_images]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    log.debug("COCOeval:\n%s", log_lines.getvalue())

    result: dict[str, float] = {}
    for key, value in zip(METRIC_KEYS, ev.stats[: len(METRIC_KEYS)], strict=True):
        # COCOeval writes -1 where a metric is undefined (no ground truth in that range).
        result[key] = float(value) if value >= 0 else float("nan")
    result["num_detections"] = int(len(rows))
    result["num_ignored"] = n_ignored
    if not len(rows):
        log.warning("coco_metrics: no detections on the ground-truth images; AP is 0")
    return result


def metrics_table(results: dict[str, dict[str, float]], *, percent: bool = False) -> pd.DataFrame:
    """Table 2's layout: one row per model, columns model | AP | AP50 | AP75 | APs | APm | APl.

    ``results`` maps a model name to ``coco_metrics``' output. Values stay fractions unless
    ``percent`` (the paper's unit: 72.8 for 0.728).
    """
    rows = []
    for name, metrics in results.items():
        absent = [k for k in METRIC_KEYS if k not in metrics]
        if absent:
            raise KeyError(f"results for {name!r} lack {absent}; pass coco_metrics' output")
        scale = 100.0 if percent else 1.0
        rows.append({"model": name, **{k: float(metrics[k]) * scale for k in METRIC_KEYS}})
    return pd.DataFrame(rows, columns=["model", *METRIC_KEYS])
