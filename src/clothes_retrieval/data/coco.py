"""Export one split of the item table as a COCO detection file (boxes + polygon masks).

The file follows the COCO ``instances`` format that pycocotools and mmdetection read:

* ``images``: ``id`` = DeepFashion2 image id, ``file_name`` = absolute image path,
  ``width``, ``height``, plus ``source`` and ``pair_id``;
* ``annotations``: ``id`` = 1..N in (image_id, item_index) order (COCOeval treats id 0 as
  "unmatched", so ids start at 1), ``image_id``, ``category_id``, ``bbox`` [x, y, w, h],
  ``area`` (polygon area of the segmentation, w*h when it has none), ``segmentation``
  (polygons), ``iscrowd`` 0, plus ``style``, ``pair_id``, ``item_uid``;
* ``categories``: all 13 DeepFashion2 categories, supercategory ``"clothes"``.

Only images with at least one item in the table appear (quarantined items never reach
it). Polygons with fewer than 3 points or zero area are dropped; an item left without a
polygon gets its box as a 4-point polygon, because mask heads (Cascade Mask R-CNN) need a
mask for every instance. Both are counted in the summary.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clothes_retrieval.data.schema import CATEGORIES, ITEM_COLUMNS
from clothes_retrieval.io import write_json

__all__ = ["CocoExportSummary", "export_coco", "coco_categories", "polygon_area"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CocoExportSummary:
    """What :func:`export_coco` wrote."""

    path: Path
    split: str
    images: int
    annotations: int
    dropped_polygons: int  # degenerate polygons (< 3 points or zero area) removed
    box_polygon_items: int  # items whose mask is their box (no valid polygon left)


def coco_categories(categories: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """A category set in COCO form (default: the 13 DeepFashion2 categories)."""
    categories = CATEGORIES if categories is None else categories
    return [{"id": k, "name": v, "supercategory": "clothes"} for k, v in categories.items()]


def polygon_area(poly: list[float]) -> float:
    """Area of a simple polygon given as flat [x0, y0, x1, y1, ...] (shoelace formula)."""
    xs, ys = poly[0::2], poly[1::2]
    n = len(xs)
    twice = sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))
    return abs(twice) / 2.0


def export_coco(
    items: pd.DataFrame,
    split: str,
    out_path: Path,
    *,
    sources: tuple[str, ...] = ("user", "shop"),
    categories: Mapping[int, str] | None = None,
) -> CocoExportSummary:
    """Write the items of ``split`` (photos of the given ``sources``) as COCO JSON.

    ``categories``: the category set of the items' ``category_id`` (default DeepFashion2's;
    e.g. a taxonomy's ``category_ids`` for items mapped with ``map_to_taxonomy``)."""
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise KeyError(f"item table lacks columns {missing}; pass a table from read_deepfashion2")
    bad_sources = [s for s in sources if s not in ("user", "shop")]
    if not sources or bad_sources:
        raise ValueError(f"sources must be a non-empty subset of ('user', 'shop'), got {sources}")

    sel = items[(items["split"] == split) & items["source"].isin(list(sources))]
    sel = sel.sort_values(["image_id", "item_index"], kind="stable")
    if sel.empty:
        splits = sorted(items["split"].dropna().unique().tolist())
        log.warning(
            "COCO export: no items for split %r and sources %s (splits in the table: %s); "
            "writing a file with no images",
            split,
            list(sources),
            splits,
        )

    # One image id must mean one file: a table mixing datasets could collide.
    paths_per_id = sel.groupby("image_id")["image_path"].nunique()
    if (paths_per_id > 1).any():
        clash = int(paths_per_id[paths_per_id > 1].index[0])
        raise ValueError(
            f"image_id {clash} of split {split!r} refers to several image files; export one "
            "dataset at a time"
        )

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    dropped = box_polys = 0
    for image_id, group in sel.groupby("image_id", sort=True):
        first = group.iloc[0]
        images.append(
            {
                "id": int(image_id),
                "file_name": str(first["image_path"]),
                "width": int(first["image_width"]),
                "height": int(first["image_height"]),
                "source": str(first["source"]),
                "pair_id": int(first["pair_id"]),
            }
        )
        for row in group.itertuples(index=False):
            x1, y1, x2, y2 = float(row.x1), float(row.y1), float(row.x2), float(row.y2)
            polys = []
            for poly in row.segmentation:
                poly = [float(v) for v in poly]
                poly = poly[: len(poly) - len(poly) % 2]  # a dangling x has no y: ignore it
                if len(poly) >= 6 and polygon_area(poly) > 0:
                    polys.append(poly)
                else:
                    dropped += 1
            if polys:
                area = sum(polygon_area(p) for p in polys)
            else:
                polys = [[x1, y1, x2, y1, x2, y2, x1, y2]]
                area = (x2 - x1) * (y2 - y1)
                box_polys += 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(image_id),
                    "category_id": int(row.category_id),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": area,
                    "segmentation": polys,
                    "iscrowd": 0,
                    "style": int(row.style),
                    "pair_id": int(row.pair_id),
                    "item_uid": str(row.item_uid),
                }
            )

    datasets = sorted(sel["dataset"].dropna().unique().tolist())
    coco = {
        "info": {"description": f"{'+'.join(datasets) or 'empty'} {split} ({'+'.join(sources)})"},
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(categories),
    }
    out_path = write_json(out_path, coco, indent=None)
    log.info(
        "COCO export %s: %d images, %d annotations (%d degenerate polygons dropped, "
        "%d items masked by their box) -> %s",
        split,
        len(images),
        len(annotations),
        dropped,
        box_polys,
        out_path,
    )
    return CocoExportSummary(
        path=Path(out_path),
        split=split,
        images=len(images),
        annotations=len(annotations),
        dropped_polygons=dropped,
        box_polygon_items=box_polys,
    )
