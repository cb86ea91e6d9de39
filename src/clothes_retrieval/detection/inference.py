"""Run a trained detector over a table of images: one row per detected box.

:func:`run_detector` loads a checkpoint with its resolved config (the ``config.py`` that
:func:`~clothes_retrieval.detection.train.train_detector` writes beside it), reads the
images itself (an unreadable image is recorded in ``failures`` and skipped) and runs the
model's test step in batches.

Detection table columns (``DETECTION_COLUMNS``, one row per box):

============  ========  ==========================================================
column        dtype     meaning
============  ========  ==========================================================
detector      string    detector name (``atss``, ``centernet``, ...)
split         string    from the image table
image_id      int64     from the image table
source        string    ``user`` / ``shop``, from the image table
image_path    string    absolute image path
image_width   int64     pixels, from the image table
image_height  int64     pixels, from the image table
x1, y1, x2    float64   box in pixels of the original image, clipped to it
y2            float64
score         float64   in [0, 1]
category_id   int64     DeepFashion2 category 1..13
============  ========  ==========================================================

Failure table columns (``FAILURE_COLUMNS``): image_path, error.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from clothes_retrieval.data.schema import CATEGORIES, DETECTION_COLUMNS

__all__ = [
    "DETECTION_COLUMNS",
    "FAILURE_COLUMNS",
    "IMAGE_COLUMNS",
    "check_detections",
    "InferenceResult",
    "run_detector",
]

log = logging.getLogger(__name__)

IMAGE_COLUMNS: tuple[str, ...] = (
    "split",
    "image_id",
    "image_path",
    "image_width",
    "image_height",
    "source",
)
FAILURE_COLUMNS: dict[str, str] = {"image_path": "string", "error": "string"}


@dataclass(frozen=True)
class InferenceResult:
    detections: pd.DataFrame  # DETECTION_COLUMNS
    failures: pd.DataFrame  # FAILURE_COLUMNS: images that could not be read


def _read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR, as mmdet's LoadImageFromFile gives; raises on failure."""
    import mmcv

    with open(path, "rb") as fh:
        data = fh.read()
    img = mmcv.imfrombytes(data, flag="color", channel_order="bgr")
    if img is None:
        raise ValueError("not a decodable image")
    return img


def _inference_cfg(config: Any, score_thr: float, max_per_image: int) -> Any:
    """A copy of the training config for inference: no annotations, images as arrays, and
    the model's own thresholds at least as permissive as asked."""
    from mmengine.config import Config

    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        cfg = Config.fromfile(str(config))
    steps = cfg.get("test_pipeline") or cfg.test_dataloader.dataset.pipeline
    pipeline = [step for step in steps if step["type"] != "LoadAnnotations"]
    if pipeline[0]["type"] not in ("LoadImageFromFile", "mmdet.LoadImageFromFile"):
        raise ValueError(f"the test pipeline starts with {pipeline[0]['type']}, not an image load")
    pipeline[0] = {"type": "mmdet.LoadImageFromNDArray"}
    cfg.test_pipeline = pipeline

    def relax(node: Any) -> None:
        if isinstance(node, dict):
            if "score_thr" in node:
                node["score_thr"] = min(node["score_thr"], score_thr)
            if "max_per_img" in node:
                node["max_per_img"] = max(node["max_per_img"], max_per_image)
            for value in node.values():
                relax(value)
        elif isinstance(node, list):
            for value in node:
                relax(value)

    # Only the final stage's thresholds (the top-level rcnn / head test_cfg) matter for
    # output; raising an RPN's max_per_img too only adds proposals.
    test_cfg = cfg.model.test_cfg
    relax(test_cfg.get("rcnn", test_cfg))
    return cfg


def _category_ids(classes: tuple[str, ...] | list[str], cfg: Any = None) -> np.ndarray:
    """Category id of each of the model's class indices: the ids the training run recorded
    (``clothes_retrieval.category_ids`` of its config), else DeepFashion2's by name."""
    recorded = (cfg.get("clothes_retrieval") or {}) if cfg is not None else {}
    if list(recorded.get("classes") or []) == list(classes) and recorded.get("category_ids"):
        return np.asarray(recorded["category_ids"], dtype=np.int64)
    by_name = {name: cid for cid, name in CATEGORIES.items()}
    unknown = [c for c in classes if c not in by_name]
    if unknown:
        raise ValueError(f"the checkpoint's classes {unknown} are not DeepFashion2 categories")
    return np.array([by_name[c] for c in classes], dtype=np.int64)


def run_detector(
    checkpoint: str | Path,
    config: str | Path | Any,
    images: pd.DataFrame,
    *,
    score_thr: float = 0.05,
    max_per_image: int = 100,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
    detector: str | None = None,
    cpu_threads: int | None = None,
) -> InferenceResult:
    """Detect garments in every image of ``images`` (columns ``IMAGE_COLUMNS``).

    ``config``: the resolved mmdet config (``work_dir/config.py``) or an ``mmengine.Config``.
    ``detector``: the name in the output; by default the one recorded in the config.
    Boxes with score < ``score_thr`` are dropped; at most ``max_per_image`` (highest scores)
    are kept per image. ``cpu_threads``: torch threads (None: unchanged).
    """
    from mmdet.apis import init_detector
    from mmengine.dataset import Compose
    from tqdm import tqdm

    import clothes_retrieval.detection.timm_backbone  # noqa: F401  (registers the backbone)
    from clothes_retrieval.detection.train import (
        resolve_device,
        torch_threads,
        trusted_checkpoints,
    )

    missing = [c for c in IMAGE_COLUMNS if c not in images.columns]
    if missing:
        raise KeyError(f"image table lacks columns {missing}")
    if not 0.0 <= score_thr <= 1.0:
        raise ValueError(f"score_thr must be in [0, 1], got {score_thr}")
    if max_per_image < 1 or batch_size < 1:
        raise ValueError("max_per_image and batch_size must be >= 1")
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"detector checkpoint {checkpoint} not found")

    cfg = _inference_cfg(config, score_thr, max_per_image)
    name = detector or cfg.get("clothes_retrieval", {}).get("detector")
    if not name:
        raise ValueError("the config names no detector: pass detector=")
    device = resolve_device(device)
    with trusted_checkpoints():
        # palette: only for drawing; "random" keeps init_detector from building the test
        # dataset (a run trained without validation has none).
        model = init_detector(cfg, str(checkpoint), device=device, palette="random")
    category_ids = _category_ids(model.dataset_meta["classes"], cfg)
    pipeline = Compose(cfg.test_pipeline)

    rows = images[list(IMAGE_COLUMNS)].reset_index(drop=True)
    frames: list[pd.DataFrame] = []
    failures: list[dict[str, str]] = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc=f"detect {name}", unit="batch", disable=not progress):
        batch = rows.iloc[start : start + batch_size]
        inputs, samples, kept = [], [], []
        for i, row in zip(batch.index, batch.itertuples(index=False), strict=True):
            try:
                img = _read_image(str(row.image_path))
            except Exception as exc:  # recorded, not fatal: the table says what failed
                failures.append({"image_path": str(row.image_path), "error": repr(exc)})
                log.warning("cannot read %s: %s", row.image_path, exc)
                continue
            packed = pipeline({"img": img, "img_id": int(i)})
            inputs.append(packed["inputs"])
            samples.append(packed["data_samples"])
            kept.append(i)
        if not kept:
            continue
        with torch.no_grad(), torch_threads(cpu_threads):
            results = model.test_step({"inputs": inputs, "data_samples": samples})
        for i, result in zip(kept, results, strict=True):
            pred = result.pred_instances
            scores = pred.scores.float().cpu().numpy().astype(np.float64)
            order = np.argsort(-scores, kind="stable")
            order = order[scores[order] >= score_thr][:max_per_image]
            if len(order) == 0:
                continue
            height, width = result.ori_shape
            boxes = pred.bboxes.float().cpu().numpy().astype(np.float64)[order]
            boxes[:, 0::2] = boxes[:, 0::2].clip(0.0, float(width))
            boxes[:, 1::2] = boxes[:, 1::2].clip(0.0, float(height))
            row = rows.loc[i]
            frames.append(
                pd.DataFrame(
                    {
                        "detector": name,
                        "split": row["split"],
                        "image_id": int(row["image_id"]),
                        "source": row["source"],
                        "image_path": str(row["image_path"]),
                        "image_width": int(row["image_width"]),
                        "image_height": int(row["image_height"]),
                        "x1": boxes[:, 0],
                        "y1": boxes[:, 1],
                        "x2": boxes[:, 2],
                        "y2": boxes[:, 3],
                        "score": scores[order].clip(0.0, 1.0),
                        "category_id": category_ids[pred.labels.cpu().numpy()[order]],
                    }
                )
            )
    detections = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    detections = detections.reindex(columns=list(DETECTION_COLUMNS)).astype(DETECTION_COLUMNS)
    failure_table = pd.DataFrame(failures, columns=list(FAILURE_COLUMNS)).astype(FAILURE_COLUMNS)
    log.info(
        "%s: %d boxes on %d images (%d unreadable)",
        name,
        len(detections),
        len(rows) - len(failures),
        len(failures),
    )
    return InferenceResult(detections=detections, failures=failure_table)


def check_detections(detections: pd.DataFrame) -> dict[str, bool]:
    """Invariants of a detections table: every box inside its image with positive area,
    every score in [0, 1], and at least one box."""
    d = detections
    inside = (
        (d["x1"] >= 0)
        & (d["y1"] >= 0)
        & (d["x2"] <= d["image_width"])
        & (d["y2"] <= d["image_height"])
        & (d["x2"] > d["x1"])
        & (d["y2"] > d["y1"])
    )
    return {
        "boxes_inside_images": bool(inside.all()),
        "scores_in_unit_interval": bool(d["score"].between(0, 1).all()),
        "found_boxes": len(d) > 0,
    }
