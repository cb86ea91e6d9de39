"""Table 5's ablation: AP50 as detectors are added to the fusion one at a time.

Rows, for ``config.detectors = [d1, ..., dn]`` (best first; the paper starts from ATSS):

* ``d1`` alone, its own boxes unfused (the paper's "ATSS alone");
* ``config.method`` (WBF in the paper) over d1..dk for k = 2..n ("+ Cascade Mask R-CNN", ...);
* a reference: plain NMS (per label, same ``iou_thr`` and ``skip_box_thr``, same weights)
  over the boxes of all n detectors, the obvious alternative WBF has to beat.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from pycocotools.coco import COCO

from clothes_retrieval.detection.metrics import coco_metrics, load_coco
from clothes_retrieval.fusion.config import FusionConfig
from clothes_retrieval.fusion.fuse import fuse_detections

__all__ = ["fusion_ablation"]

log = logging.getLogger(__name__)

ABLATION_COLUMNS = ("boxes", "method", "num_detectors", "AP50", "num_detections")


def fusion_ablation(
    detections: pd.DataFrame,
    config: FusionConfig,
    coco_gt: str | Path | COCO,
    *,
    progress: bool = False,
) -> pd.DataFrame:
    """AP50 (a fraction) of d1 alone, of ``config.method`` over d1..dk, and of NMS over all.

    Columns: boxes (``"atss"``, ``"+ cascade"``, ..., ``"nms over all 5"``), method
    (``"none"`` for the unfused first row), num_detectors, AP50, num_detections.
    """
    gt = load_coco(coco_gt)  # parsed once, shared by every row
    dets = config.detectors
    rows = []
    first = detections[detections["detector"] == dets[0]]
    if first.empty:
        raise ValueError(f"detector {dets[0]!r} has no rows in the detections table")
    m = coco_metrics(first, gt)
    rows.append((dets[0], "none", 1, m["AP50"], m["num_detections"]))
    for k in range(2, len(dets) + 1):
        fused = fuse_detections(detections, config.for_detectors(dets[:k]), progress=progress)
        m = coco_metrics(fused, gt)
        rows.append((f"+ {dets[k - 1]}", config.method, k, m["AP50"], m["num_detections"]))
        log.info("ablation: %s over %s: AP50 %.4f", config.method, dets[:k], m["AP50"])
    nms = config.model_copy(update={"method": "nms", "label_mode": "per_label"})
    m = coco_metrics(fuse_detections(detections, nms, progress=progress), gt)
    rows.append((f"nms over all {len(dets)}", "nms", len(dets), m["AP50"], m["num_detections"]))
    return pd.DataFrame(rows, columns=list(ABLATION_COLUMNS))
