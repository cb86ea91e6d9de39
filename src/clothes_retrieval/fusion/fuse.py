"""Fuse the detections table: the boxes of several detectors become one box set per image.

Input and output are detections tables (``DETECTION_COLUMNS``); the output's ``detector``
is the method name (``"wbf"``, ``"nms"``, ...). Per image (one ``(split, image_id)``):

* only the configured detectors' boxes take part, in the configured order (other
  detectors in the table are ignored, and logged); every configured detector counts in the
  score rescaling even on an image where it found nothing, so an image where only some
  detectors produced boxes still fuses, and a box only one of five detectors found keeps
  a fifth of its score under ``conf_type="avg"`` (ensemble-boxes' semantics for an empty
  list); images with no boxes at all produce nothing;
* coordinates are divided by the image size for the fusion and multiplied back after
  (boxes reaching outside the image are clipped to it, as ensemble-boxes clips to [0, 1];
  boxes of zero area are dropped);
* a fused box's score can exceed 1 only under ``conf_type="avg"`` with unequal weights
  (several boxes of a heavy detector in one cluster); it is clipped to 1 (and counted in
  the log) because the table promises scores in [0, 1]. A cluster of zero-score boxes
  has no weighted position (0 / 0) and is dropped, also counted.

Work is split into chunks of whole images, held as flat numpy arrays (grouped once, with
numpy, not per image with pandas), and fused in worker processes when the input is large
enough to repay starting them; smaller inputs are fused in this process.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from clothes_retrieval.data.schema import DETECTION_COLUMNS as _DETECTION_SCHEMA
from clothes_retrieval.fusion.config import FusionConfig
from clothes_retrieval.fusion.engine import Chunk, FusedChunk, fuse_chunk

__all__ = [
    "DETECTION_COLUMNS",
    "FusedDetectors",
    "fuse_detections",
    "fuse_detectors",
    "usable_cores",
]

log = logging.getLogger(__name__)

DETECTION_COLUMNS: tuple[str, ...] = tuple(_DETECTION_SCHEMA)  # data/schema.py
_META_COLUMNS = ("split", "image_id", "source", "image_path", "image_width", "image_height")

# Boxes per chunk. The WBF kernel does one numpy pass per step over all the chunk's
# (image, label) lanes, so bigger chunks amortise its per-step overhead and the pickling;
# 50k boxes (100 images of 5 x 100 boxes) is about 0.1 s of work. The upper bound keeps a
# worker's cluster arrays small (tens of MB).
_MIN_CHUNK_BOXES = 50_000
_MAX_CHUNK_BOXES = 250_000
# Below this many boxes a pool is not worth starting. Measured on 2 busy cores: the
# in-process kernel fuses 1M boxes (2,000 images of 5 x 100) in 2-3 s, while a forkserver
# pool costs about 2 s more to start (each worker re-imports the caller's __main__ module)
# and gains at most the second core; so from about 3M boxes (6,000 images) on.
_MIN_POOL_BOXES = 3_000_000
# forkserver, not fork: workers start from a clean process, never a copy of a parent that
# may hold threads (torch, OpenMP, gRPC) in the middle of a lock.
_START_METHOD = "forkserver"


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _check_table(detections: pd.DataFrame) -> None:
    missing = [c for c in DETECTION_COLUMNS if c not in detections.columns]
    if missing:
        raise KeyError(
            f"detections table lacks columns {missing}; expected exactly {list(DETECTION_COLUMNS)}"
        )


def _empty_like(detections: pd.DataFrame) -> pd.DataFrame:
    return detections.loc[:, list(DETECTION_COLUMNS)].iloc[0:0].reset_index(drop=True)


def _chunk_bounds(group_starts: np.ndarray, n_boxes: int, target: int) -> list[tuple[int, int]]:
    """Split [0, n_boxes) at image boundaries into pieces of about ``target`` boxes."""
    bounds = [0]
    for start in group_starts[1:]:
        if start - bounds[-1] >= target:
            bounds.append(int(start))
    bounds.append(n_boxes)
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def fuse_detections(
    detections: pd.DataFrame, config: FusionConfig, *, progress: bool = True
) -> pd.DataFrame:
    """Fuse the boxes of ``config.detectors`` per image with ``config.method``.

    Returns a detections table (same columns) with ``detector`` set to the method name,
    one image after another ((split, image_id) order), each image's boxes by descending
    score.
    """
    _check_table(detections)
    if detections.empty:
        return _empty_like(detections)
    present = set(detections["detector"].unique())
    missing = [d for d in config.detectors if d not in present]
    if missing:
        raise ValueError(
            f"fusion config names detectors {missing} that have no rows in the detections "
            f"table (it has {sorted(present)}); fix FusionConfig.detectors"
        )
    ignored = sorted(present - set(config.detectors))
    if ignored:
        log.info("fusion: ignoring detectors %s (not in the fusion config)", ignored)
    sel = detections[detections["detector"].isin(config.detectors)]

    # One pass of numpy over the whole table: image index, detector index, normalised boxes.
    group = (
        sel.groupby(["split", "image_id"], sort=True, observed=True, dropna=False)
        .ngroup()
        .to_numpy()
    )
    model = pd.Categorical(sel["detector"], categories=config.detectors).codes.astype(np.int64)
    order = np.lexsort((model, group))  # stable: table order within (image, detector)
    group, model = group[order], model[order]
    width = sel["image_width"].to_numpy(dtype=np.float64)[order]
    height = sel["image_height"].to_numpy(dtype=np.float64)[order]
    xyxy = sel[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)[order]  # (N, 4) pixels
    scores = sel["score"].to_numpy(dtype=np.float64)[order]
    labels = sel["category_id"].to_numpy(dtype=np.int64)[order]
    if not (np.isfinite(xyxy).all() and np.isfinite(scores).all()):
        bad = int((~np.isfinite(xyxy).all(axis=1) | ~np.isfinite(scores)).sum())
        raise ValueError(f"{bad} detections have NaN or infinite coordinates or scores")
    if not ((width > 0).all() and (height > 0).all()):
        raise ValueError("detections table has images of zero or negative width/height")
    size = np.stack([width, height, width, height], axis=1)  # (N, 4)
    boxes = xyxy / size

    group_starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    meta = sel.iloc[order[group_starts]][list(_META_COLUMNS)].reset_index(drop=True)
    n_images, n_boxes = len(group_starts), len(scores)

    workers = config.workers or usable_cores()
    use_pool = workers > 1 and n_boxes >= _MIN_POOL_BOXES
    target = _MAX_CHUNK_BOXES
    if use_pool:  # a few chunks per worker, for balance and a moving progress bar
        target = min(_MAX_CHUNK_BOXES, max(_MIN_CHUNK_BOXES, math.ceil(n_boxes / (4 * workers))))
    bounds = _chunk_bounds(group_starts, n_boxes, target)
    params = _params(config)
    chunks = [
        Chunk(boxes[a:b], scores[a:b], labels[a:b], model[a:b], group[a:b]) for a, b in bounds
    ]
    log.info(
        "fusion (%s over %s): %d boxes, %d images, %d chunks, %s",
        config.method,
        config.detectors,
        n_boxes,
        n_images,
        len(chunks),
        f"{min(workers, len(chunks))} processes" if use_pool else "in process",
    )
    results = _run(chunks, params, workers if use_pool else 1, progress)
    fused = FusedChunk(
        *(np.concatenate(x) for x in zip(*[_astuple(r) for r in results], strict=True))
    )
    return _to_table(fused, meta, config)


def _params(config: FusionConfig) -> dict[str, Any]:
    return {
        "method": config.method,
        "weights": config.detector_weights,
        "user_weights": config.weights,
        "iou_thr": config.iou_thr,
        "skip_box_thr": config.skip_box_thr,
        "conf_type": config.conf_type,
        "label_mode": config.label_mode,
        "soft_nms_sigma": config.soft_nms_sigma,
        "soft_nms_thresh": config.soft_nms_thresh,
    }


def _astuple(r: FusedChunk) -> tuple[np.ndarray, ...]:
    return r.groups, r.boxes, r.scores, r.labels


def _run(
    chunks: list[Chunk], params: dict[str, Any], workers: int, progress: bool
) -> list[FusedChunk]:
    """Fuse the chunks, in this process or in a pool; results in chunk order."""
    n_images = sum(int(len(np.unique(c.groups))) for c in chunks) if progress else 0
    bar = tqdm(total=n_images, desc="fusing", unit="img", disable=not progress)
    results: list[FusedChunk | None] = [None] * len(chunks)
    try:
        if workers <= 1 or len(chunks) == 1:
            for i, chunk in enumerate(chunks):
                results[i] = fuse_chunk(chunk, params)
                bar.update(len(np.unique(chunk.groups)) if progress else 0)
        else:
            ctx = multiprocessing.get_context(_START_METHOD)
            n = min(workers, len(chunks))
            with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
                futures = {pool.submit(fuse_chunk, c, params): i for i, c in enumerate(chunks)}
                for fut in as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    bar.update(len(np.unique(chunks[i].groups)) if progress else 0)
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _to_table(fused: FusedChunk, meta: pd.DataFrame, config: FusionConfig) -> pd.DataFrame:
    """Fused boxes back to pixels, as a detections table."""
    finite = np.isfinite(fused.boxes).all(axis=1)
    if not finite.all():
        log.info(
            "fusion: dropped %d fused boxes made only of zero-score boxes (no weighted position)",
            int((~finite).sum()),
        )
    groups, boxes = fused.groups[finite], fused.boxes[finite]
    scores, labels = fused.scores[finite], fused.labels[finite]
    if config.max_per_image is not None and len(groups):
        # Within an image the boxes are already by descending score: keep the first k.
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        rank = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
        keep = rank < config.max_per_image
        groups, boxes, scores, labels = groups[keep], boxes[keep], scores[keep], labels[keep]
    over = scores > 1.0
    if over.any():
        log.info(
            "fusion: clipped %d fused scores above 1 (unequal weights, conf_type avg)",
            int(over.sum()),
        )
        scores = np.minimum(scores, 1.0)

    out = meta.iloc[groups].reset_index(drop=True)
    w = out["image_width"].to_numpy(dtype=np.float64)
    h = out["image_height"].to_numpy(dtype=np.float64)
    pixels = boxes * np.stack([w, h, w, h], axis=1)  # (K, 4)
    out.insert(0, "detector", config.method)
    for j, col in enumerate(("x1", "y1", "x2", "y2")):
        out[col] = pixels[:, j]
    out["score"] = scores.astype(np.float64)
    out["category_id"] = labels.astype(np.int64)
    return out.loc[:, list(DETECTION_COLUMNS)]


@dataclass(frozen=True)
class FusedDetectors:
    fused: pd.DataFrame
    config: FusionConfig  # restricted to the detectors that found boxes
    silent: tuple[str, ...]  # detectors that found no box, left out


def fuse_detectors(
    detections: pd.DataFrame, config: FusionConfig, *, progress: bool = True
) -> FusedDetectors:
    """Fuse every detector of ``config`` that found at least one box.

    A detector without boxes (e.g. undertrained) must not sink the fusion: it is left out
    (logged, and named in ``silent``) and the others fuse with their weights; no box from
    any detector raises ``ValueError``.
    """
    present = [n for n in config.detectors if (detections["detector"] == n).any()]
    silent = tuple(n for n in config.detectors if n not in present)
    if not present:
        raise ValueError(
            f"no detector produced a box ({list(config.detectors)}); check their training "
            "metrics and detection.score_thr"
        )
    if silent:
        log.warning("detectors without boxes, left out of the fusion: %s", list(silent))
    restricted = config.for_detectors(present)
    fused = fuse_detections(detections, restricted, progress=progress)
    return FusedDetectors(fused, restricted, silent)
