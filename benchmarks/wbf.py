"""Weighted boxes fusion: our fusion stage against a plain loop over ensemble-boxes.

Reference ("plain"): a single-process Python loop calling
``ensemble_boxes.weighted_boxes_fusion`` once per image. It is given the data in its
simplest form, prepared before the clock starts: per image, a list of five (100, 4)
arrays of normalised boxes and the matching score and label arrays. Its time is the loop
alone (no table in, no table out, no pixel conversion).

Ours: ``clothes_retrieval.fusion.fuse_detections`` on the detections table, timed end to
end: grouping the table, normalising, fusing (in process or in worker processes, as the
stage decides for this size), converting back to pixels and building the output table.

Input: ``--images`` synthetic images (default 2,000) of 400-1,200 px a side, each with 1-4
objects; each of 5 detectors gives 100 boxes jittered around the objects (Gaussian, 10%
of the object size), uniform random labels 1..13 and scores in [0, 1), all inside the
image (so neither side spends time on warnings). WBF settings: ensemble-boxes' defaults
(iou_thr 0.55, skip_box_thr 0, conf_type avg, equal weights).

Check: the two outputs must be identical (same boxes in pixels, scores and labels, in the
same order, image by image), else the script fails.

Prints as its last line ``wbf speedup: X.XX`` (plain time / our time).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd
from ensemble_boxes import weighted_boxes_fusion

from clothes_retrieval.fusion import FusionConfig, fuse_detections
from clothes_retrieval.fusion.fuse import usable_cores

DETECTORS = ["atss", "cascade_mask_rcnn", "centernet", "retinanet_r101", "retinanet_x101"]
BOXES_PER_DETECTOR = 100


def synthetic_detections(n_images: int, seed: int = 0) -> pd.DataFrame:
    """Detections table: 5 detectors x 100 boxes per image, jittered around 1-4 objects."""
    rng = np.random.default_rng(seed)
    nd, nb = len(DETECTORS), BOXES_PER_DETECTOR
    per_image = nd * nb
    size = rng.integers(400, 1201, (n_images, 2)).astype(np.float64)  # (I, 2) w, h
    n_obj = rng.integers(1, 5, n_images)  # (I,)
    lo = rng.uniform(0.0, 0.6, (n_images, 4, 2))
    hi = np.minimum(lo + rng.uniform(0.1, 0.4, (n_images, 4, 2)), 1.0)
    objects = np.concatenate([lo, hi], axis=2)  # (I, 4 objects, 4) normalised
    image = np.repeat(np.arange(n_images), per_image)  # (N,)
    obj = (rng.uniform(size=len(image)) * n_obj[image]).astype(np.int64)  # one of its objects
    o = objects[image, obj]  # (N, 4)
    wh = np.tile(o[:, 2:] - o[:, :2], 2)
    b = np.clip(o + 0.1 * rng.normal(size=o.shape) * wh, 0.0, 1.0)
    scale = np.tile(size[image], 2)  # (N, 4): w, h, w, h
    b = b * scale  # pixels
    # At least 1 px a side, inside the image.
    b[:, 2:] = np.minimum(np.maximum(b[:, 2:], b[:, :2] + 1.0), scale[:, 2:])
    b[:, :2] = np.minimum(b[:, :2], b[:, 2:] - 1.0)
    return pd.DataFrame(
        {
            "detector": np.tile(np.repeat(DETECTORS, nb), n_images),
            "split": "validation",
            "image_id": (image + 1).astype(np.int64),
            "source": "user",
            "image_path": [f"/images/{i + 1:06d}.jpg" for i in image],
            "image_width": size[image, 0].astype(np.int64),
            "image_height": size[image, 1].astype(np.int64),
            "x1": b[:, 0],
            "y1": b[:, 1],
            "x2": b[:, 2],
            "y2": b[:, 3],
            "score": rng.uniform(0.0, 1.0, len(image)),
            "category_id": rng.integers(1, 14, len(image)).astype(np.int64),
        }
    )


def per_image_lists(table: pd.DataFrame) -> list[tuple[list, list, list, float, float]]:
    """The plain loop's input: per image, per detector, normalised boxes / scores / labels."""
    out = []
    for _, img in table.groupby("image_id", sort=True):
        w, h = float(img["image_width"].iloc[0]), float(img["image_height"].iloc[0])
        bl, sl, ll = [], [], []
        for det in DETECTORS:
            d = img[img["detector"] == det]
            bl.append(d[["x1", "y1", "x2", "y2"]].to_numpy() / [w, h, w, h])
            sl.append(d["score"].to_numpy())
            ll.append(d["category_id"].to_numpy())
        out.append((bl, sl, ll, w, h))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore")

    table = synthetic_detections(args.images)
    lists = per_image_lists(table)
    config = FusionConfig(detectors=DETECTORS)
    print(f"{args.images} images, {len(table):,} boxes, {usable_cores()} usable cores")

    start = time.perf_counter()
    plain = [weighted_boxes_fusion(bl, sl, ll, iou_thr=0.55) for bl, sl, ll, _, _ in lists]
    plain_s = time.perf_counter() - start
    print(f"plain ensemble-boxes loop: {plain_s:.2f} s ({args.images / plain_s:.0f} images/s)")

    start = time.perf_counter()
    ours = fuse_detections(table, config, progress=False)
    ours_s = time.perf_counter() - start
    print(f"fuse_detections:           {ours_s:.2f} s ({args.images / ours_s:.0f} images/s)")

    # Same output, image by image: the plain boxes scaled back to pixels as the stage does.
    ref_boxes = np.concatenate(
        [b * [w, h, w, h] for (b, _, _), (_, _, _, w, h) in zip(plain, lists, strict=True)]
    )
    ref_scores = np.concatenate([s for _, s, _ in plain])
    ref_labels = np.concatenate([lab for _, _, lab in plain]).astype(np.int64)
    ref_images = np.repeat(np.arange(1, args.images + 1), [len(s) for _, s, _ in plain])
    ok = (
        len(ours) == len(ref_scores)
        and np.array_equal(ours["image_id"].to_numpy(), ref_images)
        and np.array_equal(ours[["x1", "y1", "x2", "y2"]].to_numpy(), ref_boxes)
        and np.array_equal(ours["score"].to_numpy(), ref_scores)
        and np.array_equal(ours["category_id"].to_numpy(), ref_labels)
    )
    if not ok:
        raise SystemExit(f"outputs differ: ours {len(ours)} boxes, plain {len(ref_scores)}")
    print(f"outputs identical: {len(ours):,} fused boxes")
    print(f"wbf speedup: {plain_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
