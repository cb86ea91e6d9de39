"""The item table and quarantine table: one row per garment item, one per rejected record.

Every source adapter (``data/sources/``: DeepFashion2, CCP, product folders, Street2Shop,
...) produces these two tables; every later stage (COCO export, retrieval crops, detection,
evaluation) reads only them. ``category_id``/``category_name`` are the source's own
categories (DeepFashion2's 13 below for DeepFashion2) until a taxonomy maps them
(``data/taxonomy.py``); ``image_id`` is the image file's number where the source numbers its
files, else an index unique within the split.

Item table columns (``ITEM_COLUMNS``; one row per annotated garment):

==================  ========  ==========================================================
column              dtype     meaning
==================  ========  ==========================================================
item_uid            str       ``"{dataset}/{split}/{image_id:06d}/{item_index}"``, unique
dataset             str       source dataset name, e.g. ``"deepfashion2"``
split               str       ``train`` / ``validation`` / ``test``
image_id            int64     integer of the image file name (DeepFashion2 convention)
image_path          str       absolute path of the image file
image_width         int64     pixels
image_height        int64     pixels
source              str       ``"user"`` (consumer photo, a query) or ``"shop"`` (gallery)
pair_id             int64     consumer and shop photos of one product group share it
style               int64     > 0: can form a positive pair (same pair_id + style); 0: cannot
item_index          int64     N of ``itemN`` in the annotation (1-based)
category_id         int64     1..13 (see ``CATEGORIES``)
category_name       str       DeepFashion2 category name
x1, y1, x2, y2      float64   bounding box in pixels, top-left / bottom-right
segmentation        object    list of polygons, each a flat list [x0, y0, x1, y1, ...]
landmarks           object    flat list [x, y, v, ...] (v: 2 visible, 1 occluded, 0 none)
scale               int64     1 small, 2 moderate, 3 large
occlusion           int64     1 slight, 2 medium, 3 heavy
zoom_in             int64     1 no, 2 medium, 3 large
viewpoint           int64     1 no wear, 2 frontal, 3 side or back
==================  ========  ==========================================================

Quarantine table columns (``QUARANTINE_COLUMNS``; one row per rejected record): dataset,
split, image_id (nullable), item_index (nullable: null when the whole image is rejected),
path (the offending file), reason (one of ``QUARANTINE_REASONS``), message (what is wrong
and what to do).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

CATEGORIES: dict[int, str] = {
    1: "short sleeve top",
    2: "long sleeve top",
    3: "short sleeve outwear",
    4: "long sleeve outwear",
    5: "vest",
    6: "sling",
    7: "shorts",
    8: "trousers",
    9: "skirt",
    10: "short sleeve dress",
    11: "long sleeve dress",
    12: "vest dress",
    13: "sling dress",
}

ITEM_COLUMNS: dict[str, str] = {
    "item_uid": "string",
    "dataset": "string",
    "split": "string",
    "image_id": "int64",
    "image_path": "string",
    "image_width": "int64",
    "image_height": "int64",
    "source": "string",
    "pair_id": "int64",
    "style": "int64",
    "item_index": "int64",
    "category_id": "int64",
    "category_name": "string",
    "x1": "float64",
    "y1": "float64",
    "x2": "float64",
    "y2": "float64",
    "segmentation": "object",
    "landmarks": "object",
    "scale": "int64",
    "occlusion": "int64",
    "zoom_in": "int64",
    "viewpoint": "int64",
}

QUARANTINE_COLUMNS: dict[str, str] = {
    "dataset": "string",
    "split": "string",
    "image_id": "Int64",
    "item_index": "Int64",
    "path": "string",
    "reason": "string",
    "message": "string",
}

# The detections table (one row per detected box; also the fused boxes, with detector set
# to the fusion method): detector name, the image it is in, the box in pixels, the score in
# [0, 1] and the DeepFashion2 category. Written by detection inference, read by fusion,
# the detection metrics and the fused-box search.
DETECTION_COLUMNS: dict[str, str] = {
    "detector": "string",
    "split": "string",
    "image_id": "int64",
    "source": "string",
    "image_path": "string",
    "image_width": "int64",
    "image_height": "int64",
    "x1": "float64",
    "y1": "float64",
    "x2": "float64",
    "y2": "float64",
    "score": "float64",
    "category_id": "int64",
}

QUARANTINE_REASONS: tuple[str, ...] = (
    "missing_image",  # annotation without an image file
    "missing_annotation",  # image file without an annotation
    "corrupt_image",  # the image cannot be decoded
    "malformed_json",  # the annotation is not valid JSON / not a mapping
    "malformed_annotation",  # an annotation file of another format cannot be parsed
    "missing_field",  # a required field is absent or of the wrong type
    "bad_box",  # box outside the image, of zero area, or with x2 <= x1 / y2 <= y1
    "unknown_category",  # category_id not in the dataset's category set
    "bad_value",  # any other field outside its documented range (source, style, ...)
)


def empty_items() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in ITEM_COLUMNS.items()})


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in QUARANTINE_COLUMNS.items()})


def conform_items(df: pd.DataFrame) -> pd.DataFrame:
    """Order and type the columns of an item table; raises ``KeyError`` naming missing ones."""
    missing = [c for c in ITEM_COLUMNS if c not in df.columns]
    if missing:
        raise KeyError(f"item table lacks columns {missing}")
    return df[list(ITEM_COLUMNS)].astype(ITEM_COLUMNS).reset_index(drop=True)


def conform_quarantine(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in QUARANTINE_COLUMNS if c not in df.columns]
    if missing:
        raise KeyError(f"quarantine table lacks columns {missing}")
    return df[list(QUARANTINE_COLUMNS)].astype(QUARANTINE_COLUMNS).reset_index(drop=True)


def validate_item_table(
    df: pd.DataFrame, categories: Mapping[int, str] | None = CATEGORIES
) -> list[str]:
    """Schema and value problems of an item table, as messages (empty list: valid).

    ``categories``: the category set ``category_id`` must lie in (DeepFashion2's by default;
    another source's own set, or None to skip that check)."""
    problems: list[str] = []
    missing = [c for c in ITEM_COLUMNS if c not in df.columns]
    if missing:
        return [f"missing columns: {missing}"]
    if df["item_uid"].duplicated().any():
        problems.append(f"{int(df['item_uid'].duplicated().sum())} duplicate item_uid values")
    bad_box = (df["x2"] <= df["x1"]) | (df["y2"] <= df["y1"]) | (df["x1"] < 0) | (df["y1"] < 0)
    bad_box |= (df["x2"] > df["image_width"]) | (df["y2"] > df["image_height"])
    if bad_box.any():
        problems.append(f"{int(bad_box.sum())} boxes outside their image or of zero area")
    if not df["source"].isin(["user", "shop"]).all():
        problems.append("source values other than 'user'/'shop'")
    if categories is not None and not df["category_id"].isin(list(categories)).all():
        bad = sorted(set(df["category_id"].tolist()) - set(categories))
        problems.append(f"category_id values {bad[:10]} outside the category set")
    return problems
