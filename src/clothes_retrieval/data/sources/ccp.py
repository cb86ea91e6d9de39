"""Clothing Co-Parsing (Yang, Luo, Lin, CVPR 2014): street photos with pixel label maps.

Native layout::

    root/photos/NNNN.jpg                     one person per photo
    root/annotations/pixel-level/NNNN.mat    key ``groundtruth``: H×W uint8 label map
    root/label_list.mat                      key ``label_list``: 1×59 names, index = value

A garment is the set of pixels of one label in one photo; its box is their bounding box
(``x2``/``y2`` one past the last pixel) and its polygons are the outer contours of those
pixels. Regions smaller than ``min_pixels`` (the data's README: about 1,500 px) are labelling
noise and are left out; so are the labels that are not garments (``null``, ``hair``,
``skin``). Every item is a street photo (``source="user"``) with no instance pairs
(``pair_id = style = 0``); the category set is the 59 labels of ``label_list.mat``.

Photos are numbered, so a training / query split by number is ``image_ids``: the reader
keeps only those photos and labels them ``split``.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from clothes_retrieval.data.sources.base import (
    Rejected,
    SourceTables,
    TableBuilder,
    image_size,
    images_in,
    numbered,
    register_source,
)

__all__ = ["CCP_NON_GARMENTS", "ccp_label_list", "mask_polygons", "read_ccp"]

CCP_NON_GARMENTS = ("null", "hair", "skin")
_ANNOTATIONS = Path("annotations") / "pixel-level"


def ccp_label_list(root: Path) -> list[str]:
    """The label names of ``root/label_list.mat`` (index = label value)."""
    from scipy.io import loadmat

    path = Path(root) / "label_list.mat"
    if not path.is_file():
        raise FileNotFoundError(
            f"CCP: {path} not found; it names the label values (key label_list)"
        )
    try:
        raw = loadmat(str(path))["label_list"]
    except Exception as exc:  # scipy's MatReadError, zlib.error, ... on a damaged file
        raise ValueError(f"CCP: cannot read label_list from {path}: {exc}") from exc
    return [str(v[0]) if len(v) else "" for v in np.asarray(raw).ravel()]


def mask_polygons(mask: np.ndarray, *, max_polygons: int = 4) -> list[list[float]]:
    """Outer contours of a boolean mask as flat [x0, y0, ...] polygons (largest first)."""
    import cv2

    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    contours = sorted(contours, key=cv2.contourArea, reverse=True)[:max_polygons]
    polys = []
    for c in contours:
        c = cv2.approxPolyDP(c, 1.5, True)  # drop near-collinear points (~1.5 px tolerance)
        if len(c) >= 3:
            polys.append([float(v) for v in c.reshape(-1)])
    return polys


def _load_label_map(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        data = loadmat(str(path))
    # scipy raises MatReadError, zlib.error, IndexError, ... on a damaged file: whatever it
    # is, this one record is unreadable, not the dataset.
    except Exception as exc:
        raise Rejected(
            "malformed_annotation",
            f"cannot read MATLAB file {path}: {exc}; re-export it (key 'groundtruth')",
            path,
        ) from exc
    if "groundtruth" not in data:
        keys = sorted(k for k in data if not k.startswith("__"))
        raise Rejected(
            "missing_field",
            f"{path} has no 'groundtruth' label map (keys: {keys})",
            path,
        )
    gt = np.asarray(data["groundtruth"])
    if gt.ndim != 2:
        raise Rejected("bad_value", f"{path}: label map has shape {gt.shape}, expected H×W", path)
    return gt


@register_source(
    "ccp",
    description="Clothing Co-Parsing street photos; garment boxes from pixel label maps",
    layout="photos/NNNN.jpg, annotations/pixel-level/NNNN.mat (groundtruth), label_list.mat",
)
def read_ccp(
    root: Path,
    *,
    split: str = "train",
    image_ids: Collection[int] | None = None,
    min_pixels: int = 1500,
    progress: bool = True,
) -> SourceTables:
    """Items of the CCP photos at ``root`` (only ``image_ids`` when given) as ``split``."""
    root = Path(root)
    labels = ccp_label_list(root)
    categories = {i: name for i, name in enumerate(labels) if name and name not in CCP_NON_GARMENTS}
    builder = TableBuilder("ccp", categories)
    photos_dir, ann_dir = root / "photos", root / _ANNOTATIONS
    for d in (photos_dir, ann_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"CCP: folder {d} not found (layout: photos/, {_ANNOTATIONS}/)")
    photos = numbered(images_in(photos_dir))
    annotations = numbered(p for p in ann_dir.iterdir() if p.suffix == ".mat")
    wanted = set(photos) | set(annotations)
    if image_ids is not None:
        wanted &= {int(i) for i in image_ids}

    for image_id in tqdm(sorted(wanted), desc="ccp", unit="img", disable=not progress):
        try:
            if image_id not in annotations:
                raise Rejected(
                    "missing_annotation",
                    f"photo {photos[image_id]} has no label map {_ANNOTATIONS}/{image_id:04d}.mat",
                    photos[image_id],
                )
            if image_id not in photos:
                raise Rejected(
                    "missing_image",
                    f"label map {annotations[image_id]} has no photo photos/{image_id:04d}.jpg",
                    annotations[image_id],
                )
            photo = photos[image_id]
            try:
                size = image_size(photo)
            except OSError as exc:
                raise Rejected("corrupt_image", f"{exc}; replace the file", photo) from exc
            gt = _load_label_map(annotations[image_id])
            if gt.shape != (size[1], size[0]):
                raise Rejected(
                    "bad_value",
                    f"label map {annotations[image_id]} is {gt.shape[1]}x{gt.shape[0]} but the "
                    f"photo is {size[0]}x{size[1]}",
                    annotations[image_id],
                )
        except Rejected as err:
            builder.reject(split, image_id, None, err)
            continue
        values, counts = np.unique(gt, return_counts=True)
        item_index = 0
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            if value < len(labels) and labels[value] in CCP_NON_GARMENTS:
                continue
            if count < min_pixels:
                continue  # labelling noise (see the module docstring)
            item_index += 1
            try:
                if value >= len(labels):
                    raise Rejected(
                        "unknown_category",
                        f"label value {value} in {annotations[image_id]} is beyond the "
                        f"{len(labels)} names of label_list.mat",
                        annotations[image_id],
                    )
                mask = gt == value
                ys = np.flatnonzero(mask.any(axis=1))
                xs = np.flatnonzero(mask.any(axis=0))
                builder.add_item(
                    split=split,
                    image_id=image_id,
                    image_path=photo,
                    size=size,
                    source="user",
                    item_index=item_index,
                    category=labels[value],
                    box=(xs[0], ys[0], xs[-1] + 1, ys[-1] + 1),
                    segmentation=mask_polygons(mask),
                )
            except Rejected as err:
                builder.reject(split, image_id, item_index, err)
    return builder.tables()
