"""Fuse one chunk of images held as flat numpy arrays (the unit a worker process runs).

Numpy only (ensemble-boxes for the NMS family), no pandas: this is what crosses the
process boundary, so a chunk is five flat arrays and a small dict of parameters.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from clothes_retrieval.fusion.wbf import _prefilter, vote_labels, wbf_batch

__all__ = ["Chunk", "FusedChunk", "fuse_chunk"]


@dataclass(frozen=True)
class Chunk:
    """Boxes of whole images, sorted by (group, model); coordinates normalised to [0, 1]."""

    boxes: np.ndarray  # (N, 4) float64
    scores: np.ndarray  # (N,) float64
    labels: np.ndarray  # (N,) int64
    models: np.ndarray  # (N,) int64, index into the detector list
    groups: np.ndarray  # (N,) int64, image index


@dataclass(frozen=True)
class FusedChunk:
    """Fused boxes, grouped by image (ascending), each image's boxes by descending score."""

    groups: np.ndarray  # (K,) int64
    boxes: np.ndarray  # (K, 4) float64 in [0, 1]
    scores: np.ndarray  # (K,) float64
    labels: np.ndarray  # (K,) int64


def fuse_chunk(chunk: Chunk, params: dict[str, Any]) -> FusedChunk:
    """Fuse every image of ``chunk``.

    ``params``: method, weights (one per detector), iou_thr, skip_box_thr, conf_type,
    label_mode, soft_nms_sigma, soft_nms_thresh (the fields of ``FusionConfig``).
    """
    if params["method"] == "wbf":
        vote = params["label_mode"] == "vote"
        labels = np.zeros_like(chunk.labels) if vote else chunk.labels
        fused = wbf_batch(
            chunk.boxes,
            chunk.scores,
            labels,
            chunk.models,
            chunk.groups,
            weights=params["weights"],
            iou_thr=params["iou_thr"],
            skip_box_thr=params["skip_box_thr"],
            conf_type=params["conf_type"],
        )
        out_labels = fused.labels
        if vote:
            out_labels = vote_labels(
                fused, chunk.labels, chunk.scores, chunk.models, params["weights"]
            )
        return FusedChunk(fused.group, fused.boxes, fused.scores, out_labels)
    return _nms_family(chunk, params)


def _nms_family(chunk: Chunk, params: dict[str, Any]) -> FusedChunk:
    """NMS, soft-NMS or non-maximum weighted through ensemble-boxes, one image at a time.

    Boxes are cleaned first exactly as WBF cleans them (corners swapped, clipped to [0, 1],
    zero-area and below-``skip_box_thr`` boxes dropped), so ensemble-boxes has nothing to
    fix (it would print about it) and all methods see the same input boxes.
    """
    import ensemble_boxes

    clean, keep = _prefilter(chunk.boxes, chunk.scores, params["skip_box_thr"])
    boxes, scores = clean[keep], chunk.scores[keep]
    labels, models, groups = chunk.labels[keep], chunk.models[keep], chunk.groups[keep]
    n_models = len(params["weights"])
    method = params["method"]
    out: list[tuple[np.ndarray, ...]] = []
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if len(groups) else []
    bounds = list(starts) + [len(groups)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        cut = a + np.searchsorted(models[a:b], np.arange(n_models + 1))  # per-detector runs
        parts = [slice(cut[m], cut[m + 1]) for m in range(n_models)]
        bl = [boxes[p] for p in parts]
        sl = [scores[p] for p in parts]
        ll = [labels[p] for p in parts]
        with contextlib.redirect_stdout(io.StringIO()):  # the library prints its warnings
            if method == "nms":
                fb, fs, fl = ensemble_boxes.nms(
                    bl, sl, ll, iou_thr=params["iou_thr"], weights=params["user_weights"]
                )
            elif method == "soft_nms":
                fb, fs, fl = ensemble_boxes.soft_nms(
                    bl,
                    sl,
                    ll,
                    iou_thr=params["iou_thr"],
                    sigma=params["soft_nms_sigma"],
                    thresh=params["soft_nms_thresh"],
                    weights=params["user_weights"],
                )
            elif method == "non_maximum_weighted":
                fb, fs, fl = ensemble_boxes.non_maximum_weighted(
                    bl,
                    sl,
                    ll,
                    weights=params["weights"],
                    iou_thr=params["iou_thr"],
                    skip_box_thr=params["skip_box_thr"],
                )
            else:
                raise ValueError(f"unknown fusion method {method!r}")
        fs = np.asarray(fs, dtype=np.float64)
        o = np.argsort(-fs, kind="stable")  # descending score, like WBF's output
        out.append(
            (
                np.full(len(o), groups[a], dtype=np.int64),
                np.asarray(fb, dtype=np.float64).reshape(-1, 4)[o],
                fs[o],
                np.asarray(fl).astype(np.int64)[o],
            )
        )
    if not out:
        return FusedChunk(
            np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        )
    g, bx, sc, lb = (np.concatenate(x) for x in zip(*out, strict=True))
    return FusedChunk(g, bx, sc, lb)
