"""Helpers: small detections tables and COCO ground truths, made in memory or tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from clothes_retrieval.fusion.fuse import DETECTION_COLUMNS


def detections_table(rows: list[dict], *, width: int = 1000, height: int = 800) -> pd.DataFrame:
    """A detections table from rows of (detector, image_id, x1, y1, x2, y2, score, label)."""
    full = [
        {
            "detector": r["detector"],
            "split": "validation",
            "image_id": r.get("image_id", 1),
            "source": "user",
            "image_path": f"/img/{r.get('image_id', 1):06d}.jpg",
            "image_width": r.get("width", width),
            "image_height": r.get("height", height),
            "x1": float(r["box"][0]),
            "y1": float(r["box"][1]),
            "x2": float(r["box"][2]),
            "y2": float(r["box"][3]),
            "score": float(r["score"]),
            "category_id": r.get("label", 1),
        }
        for r in rows
    ]
    table = pd.DataFrame(full, columns=list(DETECTION_COLUMNS))
    return table.astype({"image_id": "int64", "category_id": "int64"})


def random_detections(
    rng: np.random.Generator,
    n_images: int,
    detectors: list[str],
    per_detector: int = 20,
    n_labels: int = 3,
) -> pd.DataFrame:
    """Boxes jittered around 1-3 objects per image, random labels and scores."""
    rows = []
    for image_id in range(1, n_images + 1):
        w, h = int(rng.integers(200, 600)), int(rng.integers(200, 600))
        n_obj = int(rng.integers(1, 4))
        lo = rng.uniform(0, 0.6, (n_obj, 2))
        objs = np.concatenate([lo, lo + rng.uniform(0.1, 0.4, (n_obj, 2))], 1) * [w, h, w, h]
        for det in detectors:
            k = int(rng.integers(0, per_detector + 1))  # some detectors find nothing
            for o in rng.integers(0, n_obj, k):
                size = np.tile(objs[o, 2:] - objs[o, :2], 2)
                box = np.clip(objs[o] + 0.08 * rng.normal(size=4) * size, 0, [w, h, w, h])
                if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                    continue
                rows.append(
                    {
                        "detector": det,
                        "image_id": image_id,
                        "width": w,
                        "height": h,
                        "box": box,
                        "score": round(float(rng.uniform(0.05, 1.0)), 3),
                        "label": int(rng.integers(1, n_labels + 1)),
                    }
                )
    return detections_table(rows)


def write_coco(path: Path, images: list[tuple[int, int, int]], anns: list[tuple]) -> Path:
    """COCO ground truth: images (id, w, h); annotations (image_id, category, x1, y1, x2, y2)."""
    data = {
        "images": [
            {"id": i, "width": w, "height": h, "file_name": f"{i}.jpg"} for i, w, h in images
        ],
        "annotations": [
            {
                "id": k + 1,
                "image_id": img,
                "category_id": cat,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
            for k, (img, cat, x1, y1, x2, y2) in enumerate(anns)
        ],
        "categories": [{"id": c, "name": str(c), "supercategory": "clothes"} for c in range(1, 14)],
    }
    path.write_text(json.dumps(data))
    return path
