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

import contextlib
import copy
import logging
import sys
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
    "Detector",
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


class Detector:
    """A trained detector loaded once, answering :meth:`predict` on decoded images.

    ``config``: the resolved mmdet config (``work_dir/config.py``) or an ``mmengine.Config``.
    ``detector``: its name; by default the one recorded in the config. Boxes with score <
    ``score_thr`` are dropped; at most ``max_per_image`` (highest scores) are kept per image.
    ``cpu_threads``: torch threads while predicting (None: unchanged).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        config: str | Path | Any,
        *,
        score_thr: float = 0.05,
        max_per_image: int = 100,
        device: str | None = None,
        detector: str | None = None,
        cpu_threads: int | None = None,
    ) -> None:
        from mmdet.apis import init_detector
        from mmengine.dataset import Compose

        import clothes_retrieval.detection.timm_backbone  # noqa: F401  (registers the backbone)
        from clothes_retrieval.detection.train import resolve_device, trusted_checkpoints

        if not 0.0 <= score_thr <= 1.0:
            raise ValueError(f"score_thr must be in [0, 1], got {score_thr}")
        if max_per_image < 1:
            raise ValueError(f"max_per_image must be >= 1, got {max_per_image}")
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"detector checkpoint {checkpoint} not found")
        cfg = _inference_cfg(config, score_thr, max_per_image)
        self.name = detector or cfg.get("clothes_retrieval", {}).get("detector")
        if not self.name:
            raise ValueError("the config names no detector: pass detector=")
        self.score_thr, self.max_per_image, self.cpu_threads = score_thr, max_per_image, cpu_threads
        self.device = resolve_device(device)
        # mmengine prints "Loads checkpoint ..." through a logger writing to stdout, where
        # `search --json` writes its answer: a logger made here writes to stderr instead.
        with contextlib.redirect_stdout(sys.stderr), trusted_checkpoints():
            # palette: only for drawing; "random" keeps init_detector from building the
            # test dataset (a run trained without validation has none).
            self.model = init_detector(cfg, str(checkpoint), device=self.device, palette="random")
        self.category_ids = _category_ids(self.model.dataset_meta["classes"], cfg)
        self._pipeline = Compose(cfg.test_pipeline)

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """For each (H, W, 3) uint8 BGR image, an (N, 6) float64 array of its boxes by
        descending score: x1, y1, x2, y2 (pixels, clipped to the image), score in [0, 1],
        category id."""
        if not images:
            return []
        packed = [self._pipeline({"img": img, "img_id": i}) for i, img in enumerate(images)]
        batch = {
            "inputs": [p["inputs"] for p in packed],
            "data_samples": [p["data_samples"] for p in packed],
        }
        from clothes_retrieval.detection.train import torch_threads

        with torch.no_grad(), torch_threads(self.cpu_threads):
            results = self.model.test_step(batch)
        out = []
        for result in results:
            pred = result.pred_instances
            scores = pred.scores.float().cpu().numpy().astype(np.float64)
            order = np.argsort(-scores, kind="stable")
            order = order[scores[order] >= self.score_thr][: self.max_per_image]
            height, width = result.ori_shape
            boxes = pred.bboxes.float().cpu().numpy().astype(np.float64)[order].reshape(-1, 4)
            boxes[:, 0::2] = boxes[:, 0::2].clip(0.0, float(width))
            boxes[:, 1::2] = boxes[:, 1::2].clip(0.0, float(height))
            cats = self.category_ids[pred.labels.cpu().numpy()[order]].astype(np.float64)
            out.append(np.column_stack([boxes, scores[order].clip(0.0, 1.0), cats]))
        return out


def detection_rows(detector: str, found: np.ndarray, image: Any) -> pd.DataFrame:
    """Detection-table rows (``DETECTION_COLUMNS``) of one image's :meth:`Detector.predict`
    output; ``image`` holds the image's ``IMAGE_COLUMNS`` (a row or a mapping)."""
    return pd.DataFrame(
        {
            "detector": detector,
            "split": image["split"],
            "image_id": int(image["image_id"]),
            "source": image["source"],
            "image_path": str(image["image_path"]),
            "image_width": int(image["image_width"]),
            "image_height": int(image["image_height"]),
            "x1": found[:, 0],
            "y1": found[:, 1],
            "x2": found[:, 2],
            "y2": found[:, 3],
            "score": found[:, 4],
            "category_id": found[:, 5].astype(np.int64),
        }
    )


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
    """Detect garments in every image of ``images`` (columns ``IMAGE_COLUMNS``) with the
    :class:`Detector` of ``checkpoint`` and ``config`` (its arguments, same meaning); an
    unreadable image is recorded in ``failures`` and skipped."""
    from tqdm import tqdm

    missing = [c for c in IMAGE_COLUMNS if c not in images.columns]
    if missing:
        raise KeyError(f"image table lacks columns {missing}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = Detector(
        checkpoint,
        config,
        score_thr=score_thr,
        max_per_image=max_per_image,
        device=device,
        detector=detector,
        cpu_threads=cpu_threads,
    )
    name = model.name
    rows = images[list(IMAGE_COLUMNS)].reset_index(drop=True)
    frames: list[pd.DataFrame] = []
    failures: list[dict[str, str]] = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc=f"detect {name}", unit="batch", disable=not progress):
        batch = rows.iloc[start : start + batch_size]
        decoded, kept = [], []
        for i, row in zip(batch.index, batch.itertuples(index=False), strict=True):
            try:
                decoded.append(_read_image(str(row.image_path)))
            except Exception as exc:  # recorded, not fatal: the table says what failed
                failures.append({"image_path": str(row.image_path), "error": repr(exc)})
                log.warning("cannot read %s: %s", row.image_path, exc)
                continue
            kept.append(i)
        for i, found in zip(kept, model.predict(decoded), strict=True):
            if len(found) == 0:
                continue
            frames.append(detection_rows(name, found, rows.loc[i]))
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
