"""Read DeepFashion2 annotations into the item table, quarantining bad records.

Layout (one directory per split)::

    root/<split>/image/NNNNNN.jpg
    root/<split>/annos/NNNNNN.json

Every image/annotation pair is checked; a bad record is written to the quarantine table
with a reason code from :data:`~clothes_retrieval.data.schema.QUARANTINE_REASONS` and a
message that names the file and field and says what to do, and reading goes on: one bad
file never sinks the run. A requested split directory that does not exist is a
configuration error and raises :class:`FileNotFoundError`.

Rules (checked in this order; the first problem decides the reason):

* whole image (one quarantine row, ``item_index`` null): ``missing_image`` (annotation
  without image), ``missing_annotation`` (image without annotation), ``corrupt_image``
  (PIL cannot read the header or, with ``check_images``, decode every pixel),
  ``malformed_json`` (not JSON, or not a mapping), ``missing_field`` (``source`` /
  ``pair_id`` absent or mistyped, or no ``itemN`` entry at all), ``bad_value`` (``source``
  not ``user``/``shop``, negative ``pair_id``, a file name that is not an integer);
* one item (one row per item): ``missing_field`` (any of ``category_id``, ``style``,
  ``bounding_box``, ``segmentation``, ``landmarks``, ``scale``, ``occlusion``, ``zoom_in``,
  ``viewpoint`` absent or mistyped), ``unknown_category`` (``category_id`` not in 1..13),
  ``bad_value`` (negative ``style``; ``scale``/``occlusion``/``zoom_in``/``viewpoint``
  outside 1..3; a polygon of odd length; landmarks not triples with v in {0, 1, 2};
  non-finite numbers), ``bad_box`` (see below).

Boxes: a box may exceed the image by at most ``box_tolerance`` pixels (default 1, the
rounding slack of annotation tools); such a box is clipped to the image. A box further
outside, with ``x2 <= x1`` or ``y2 <= y1``, or with area (after clipping) below
``min_box_area`` is quarantined as ``bad_box``.

The image size always comes from the image file header, never from the annotation.
``category_name`` is taken from :data:`~clothes_retrieval.data.schema.CATEGORIES` (the
annotation's own name is ignored). Numbers in ``segmentation`` and ``landmarks`` are
stored as floats.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from clothes_retrieval.config import FrozenConfig
from clothes_retrieval.data.schema import (
    CATEGORIES,
    ITEM_COLUMNS,
    conform_items,
    conform_quarantine,
    empty_items,
    empty_quarantine,
)
from clothes_retrieval.io import atomic_path, write_parquet

__all__ = [
    "ReaderConfig",
    "ReadResult",
    "read_deepfashion2",
    "write_item_tables",
    "read_item_table",
    "read_quarantine_table",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg")  # DeepFashion2 ships JPEG only
SOURCES = ("user", "shop")
# Item fields that must be integers, with their allowed closed range (None: no bound).
_INT_FIELDS: dict[str, tuple[int | None, int | None]] = {
    "style": (0, None),
    "scale": (1, 3),
    "occlusion": (1, 3),
    "zoom_in": (1, 3),
    "viewpoint": (1, 3),
}
_ITEM_KEY = re.compile(r"^item(\d+)$")


class ReaderConfig(FrozenConfig):
    """How to read and validate a DeepFashion2-layout dataset."""

    splits: tuple[str, ...] = ("train", "validation")
    check_images: bool = True  # decode every image fully (slow, catches truncated files)
    min_box_area: float = Field(1.0, ge=0.0)  # px², after clipping; smaller boxes: bad_box
    box_tolerance: float = Field(1.0, ge=0.0)  # px a box may exceed the image (then clipped)
    workers: int = Field(1, ge=1)  # threads for image checks + parsing; 1: no pool

    @field_validator("splits")
    @classmethod
    def _splits_nonempty_unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one split is required")
        if len(set(v)) != len(v):
            raise ValueError(f"splits repeat a name: {list(v)}")
        return v


@dataclass(frozen=True)
class ReadResult:
    """The item table (schema.ITEM_COLUMNS) and the quarantine table (QUARANTINE_COLUMNS)."""

    items: pd.DataFrame
    quarantine: pd.DataFrame


class _Reject(Exception):
    """A record-level problem: carries the quarantine reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --------------------------------------------------------------------------- reading


def read_deepfashion2(
    root: Path, config: ReaderConfig, *, dataset: str = "deepfashion2", progress: bool = True
) -> ReadResult:
    """Read ``root/<split>/{image,annos}`` for each configured split.

    Raises :class:`FileNotFoundError` when a requested split (or its ``image``/``annos``
    folder) does not exist; every record-level problem goes to the quarantine table.
    """
    root = Path(root).expanduser().absolute()
    jobs: list[tuple[str, str, int | None, Path | None, Path | None]] = []
    for split in config.splits:
        jobs.extend(_split_jobs(root, split))

    items: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []

    def run(job: tuple[str, str, int | None, Path | None, Path | None]):
        return _read_record(*job, config=config, dataset=dataset)

    pool = ThreadPoolExecutor(max_workers=config.workers) if config.workers > 1 else None
    results = pool.map(run, jobs) if pool is not None else map(run, jobs)  # both keep order
    try:
        for got_items, got_rejects in tqdm(
            results, total=len(jobs), desc=f"reading {dataset}", unit="img", disable=not progress
        ):
            items.extend(got_items)
            rejects.extend(got_rejects)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    split_order = {s: i for i, s in enumerate(config.splits)}
    item_df = conform_items(pd.DataFrame(items)) if items else empty_items()
    if len(item_df):
        order = item_df["split"].map(split_order).to_numpy()
        item_df = item_df.iloc[
            np.lexsort((item_df["item_index"], item_df["image_id"], order))
        ].reset_index(drop=True)
    quarantine = conform_quarantine(pd.DataFrame(rejects)) if rejects else empty_quarantine()
    if len(quarantine):
        quarantine = (
            quarantine.assign(_o=quarantine["split"].map(split_order))
            .sort_values(["_o", "image_id", "item_index", "path"], na_position="first")
            .drop(columns="_o")
            .reset_index(drop=True)
        )

    by_reason = Counter(quarantine["reason"])
    n_images = item_df["image_id"].groupby(item_df["split"]).nunique().sum() if len(item_df) else 0
    summary = (
        f"{dataset}: read {len(item_df)} items from {n_images} images in splits "
        f"{list(config.splits)}; quarantined {len(quarantine)} records"
    )
    if by_reason:
        summary += " (" + ", ".join(f"{r}: {n}" for r, n in sorted(by_reason.items())) + ")"
        log.warning("%s; see the quarantine table for what to fix", summary)
    else:
        log.info(summary)
    return ReadResult(items=item_df, quarantine=quarantine)


def _split_jobs(
    root: Path, split: str
) -> list[tuple[str, str, int | None, Path | None, Path | None]]:
    """Pair image and annotation files of one split by file stem."""
    split_dir = root / split
    image_dir, anno_dir = split_dir / "image", split_dir / "annos"
    for d in (split_dir, image_dir, anno_dir):
        if not d.is_dir():
            raise FileNotFoundError(
                f"split '{split}': directory {d} does not exist; expected the DeepFashion2 "
                f"layout {root}/<split>/image/NNNNNN.jpg and {root}/<split>/annos/NNNNNN.json "
                "(check the dataset root, or remove the split from the reader config)"
            )
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    annos = {p.stem: p for p in anno_dir.iterdir() if p.suffix.lower() == ".json"}

    def key(stem: str) -> tuple[int, str]:
        return (int(stem), stem) if stem.isdigit() else (-1, stem)

    jobs = []
    for stem in sorted(set(images) | set(annos), key=key):
        image_id = int(stem) if stem.isdigit() else None
        jobs.append((split, stem, image_id, images.get(stem), annos.get(stem)))
    return jobs


def _read_record(
    split: str,
    stem: str,
    image_id: int | None,
    image_path: Path | None,
    anno_path: Path | None,
    *,
    config: ReaderConfig,
    dataset: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate one image + annotation; returns (item rows, quarantine rows)."""

    def reject(path: Path, reason: str, message: str, item_index: int | None = None) -> dict:
        log.debug("quarantine %s [%s]: %s", path, reason, message)
        return {
            "dataset": dataset,
            "split": split,
            "image_id": image_id,
            "item_index": item_index,
            "path": str(path),
            "reason": reason,
            "message": message,
        }

    if image_path is None:
        assert anno_path is not None
        image_dir = anno_path.parent.parent / "image"
        msg = (
            f"{anno_path}: annotation has no image {stem}.jpg in {image_dir}; restore the "
            "image or delete the annotation"
        )
        return [], [reject(anno_path, "missing_image", msg)]
    if anno_path is None:
        msg = (
            f"{image_path}: image has no annotation {stem}.json in "
            f"{image_path.parent.parent / 'annos'}; restore the annotation or delete the image"
        )
        return [], [reject(image_path, "missing_annotation", msg)]
    if image_id is None:
        msg = (
            f"{image_path}: file name '{stem}' is not an integer image id (NNNNNN.jpg); "
            "rename the image and its annotation"
        )
        return [], [reject(image_path, "bad_value", msg)]

    try:
        width, height = _image_size(image_path, full_decode=config.check_images)
    except _Reject as exc:
        return [], [reject(image_path, exc.reason, exc.message)]

    try:
        anno = _load_annotation(anno_path)
        source, pair_id = _image_fields(anno, anno_path)
        item_keys = sorted(
            ((int(m.group(1)), k) for k in anno if (m := _ITEM_KEY.match(str(k)))),
        )
        if not item_keys:
            raise _Reject(
                "missing_field",
                f"{anno_path}: no 'itemN' entries; add the items or delete the image and "
                "its annotation",
            )
    except _Reject as exc:
        return [], [reject(anno_path, exc.reason, exc.message)]

    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for index, key in item_keys:
        try:
            fields = _item_fields(anno[key], key, anno_path, width, height, config)
        except _Reject as exc:
            rejects.append(reject(anno_path, exc.reason, exc.message, item_index=index))
            continue
        rows.append(
            {
                "item_uid": f"{dataset}/{split}/{image_id:06d}/{index}",
                "dataset": dataset,
                "split": split,
                "image_id": image_id,
                "image_path": str(image_path),
                "image_width": width,
                "image_height": height,
                "source": source,
                "pair_id": pair_id,
                "item_index": index,
                **fields,
            }
        )
    return rows, rejects


def _image_size(path: Path, *, full_decode: bool) -> tuple[int, int]:
    """(width, height) from the header; with ``full_decode`` every pixel is decoded too."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if full_decode:
                im.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        what = "decoded" if full_decode else "opened"
        raise _Reject(
            "corrupt_image",
            f"{path}: image cannot be {what} ({type(exc).__name__}: {exc}); re-download or "
            "re-extract it, or delete it and its annotation",
        ) from None
    if width <= 0 or height <= 0:
        raise _Reject("corrupt_image", f"{path}: image has size {width}x{height}; replace it")
    return width, height


def _load_annotation(path: Path) -> dict[str, Any]:
    try:
        anno = json.loads(path.read_bytes())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Reject(
            "malformed_json",
            f"{path}: not readable as JSON ({exc}); re-extract the annotation or delete "
            "it and its image",
        ) from None
    if not isinstance(anno, dict):
        raise _Reject(
            "malformed_json",
            f"{path}: expected a JSON object with 'source', 'pair_id' and 'itemN' keys, got "
            f"{type(anno).__name__}; re-extract the annotation or delete it and its image",
        )
    return anno


def _as_int(value: Any) -> int | None:
    """An integer, or an integral float (JSON writers sometimes emit 3.0); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _image_fields(anno: dict[str, Any], path: Path) -> tuple[str, int]:
    fix = "fix the annotation or delete it and its image"
    if "source" not in anno or not isinstance(anno["source"], str):
        got = "absent" if "source" not in anno else f"a {type(anno['source']).__name__}"
        raise _Reject("missing_field", f"{path}: 'source' is {got}, expected a string; {fix}")
    if anno["source"] not in SOURCES:
        raise _Reject(
            "bad_value", f"{path}: 'source' is {anno['source']!r}, expected 'user' or 'shop'; {fix}"
        )
    pair_id = _as_int(anno.get("pair_id"))
    if pair_id is None:
        got = "absent" if "pair_id" not in anno else repr(anno["pair_id"])
        raise _Reject("missing_field", f"{path}: 'pair_id' is {got}, expected an integer; {fix}")
    if pair_id < 0:
        raise _Reject("bad_value", f"{path}: 'pair_id' is {pair_id}, expected >= 0; {fix}")
    return anno["source"], pair_id


def _item_fields(
    item: Any, key: str, path: Path, width: int, height: int, config: ReaderConfig
) -> dict[str, Any]:
    """Validated item columns (category .. viewpoint) of one ``itemN`` entry."""
    fix = f"fix {key} in the annotation or delete the item"
    where = f"{path}: {key}"
    if not isinstance(item, dict):
        raise _Reject(
            "missing_field", f"{where} is a {type(item).__name__}, expected an object; {fix}"
        )

    def missing(field: str, expected: str) -> _Reject:
        got = "absent" if field not in item else f"{item[field]!r}"[:80]
        return _Reject("missing_field", f"{where}.{field} is {got}, expected {expected}; {fix}")

    # Types first: a missing or mistyped field makes every later check meaningless.
    category_id = _as_int(item.get("category_id"))
    if category_id is None:
        raise missing("category_id", "an integer")
    ints: dict[str, int] = {}
    for field in _INT_FIELDS:
        value = _as_int(item.get(field))
        if value is None:
            raise missing(field, "an integer")
        ints[field] = value
    box = item.get("bounding_box")
    if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
        raise missing("bounding_box", "[x1, y1, x2, y2] numbers")
    seg = item.get("segmentation")
    if not (
        isinstance(seg, list)
        and all(isinstance(p, list) and all(_is_number(v) for v in p) for p in seg)
    ):
        raise missing("segmentation", "a list of polygons [x0, y0, x1, y1, ...]")
    landmarks = item.get("landmarks")
    if not (isinstance(landmarks, list) and all(_is_number(v) for v in landmarks)):
        raise missing("landmarks", "a flat list [x, y, v, ...]")

    if category_id not in CATEGORIES:
        raise _Reject(
            "unknown_category",
            f"{where}.category_id is {category_id}, expected 1..13 (DeepFashion2 categories); "
            f"{fix}",
        )
    for field, (lo, hi) in _INT_FIELDS.items():
        value = ints[field]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise _Reject("bad_value", f"{where}.{field} is {value}, expected {bounds}; {fix}")
    numbers = [*box, *landmarks, *(v for p in seg for v in p)]
    if not all(math.isfinite(v) for v in numbers):
        raise _Reject("bad_value", f"{where} has NaN or infinite coordinates; {fix}")
    for i, poly in enumerate(seg):
        if len(poly) % 2:
            raise _Reject(
                "bad_value",
                f"{where}.segmentation[{i}] has {len(poly)} numbers, expected x, y pairs; {fix}",
            )
    if len(landmarks) % 3 or any(v not in (0, 1, 2) for v in landmarks[2::3]):
        raise _Reject(
            "bad_value",
            f"{where}.landmarks must be [x, y, v] triples with v in {{0, 1, 2}} "
            f"(got {len(landmarks)} numbers); {fix}",
        )

    x1, y1, x2, y2 = (float(v) for v in box)
    tol = config.box_tolerance
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise _Reject(
            "bad_box",
            f"{where}.bounding_box {box} lies outside the {width}x{height} image by more than "
            f"{tol:g} px; fix the box or delete the item",
        )
    x1, x2 = min(max(x1, 0.0), float(width)), min(max(x2, 0.0), float(width))
    y1, y2 = min(max(y1, 0.0), float(height)), min(max(y2, 0.0), float(height))
    if x2 <= x1 or y2 <= y1 or (x2 - x1) * (y2 - y1) < config.min_box_area:
        raise _Reject(
            "bad_box",
            f"{where}.bounding_box {box} has area {max(x2 - x1, 0) * max(y2 - y1, 0):g} px² "
            f"inside the image (minimum {config.min_box_area:g}; x2 must exceed x1 and y2 "
            "exceed y1); fix the box or delete the item",
        )
    return {
        "style": ints["style"],
        "category_id": category_id,
        "category_name": CATEGORIES[category_id],
        "x1": x1,
        "y1": y1,
        "x2": x2,
        "y2": y2,
        "segmentation": [[float(v) for v in p] for p in seg],
        "landmarks": [float(v) for v in landmarks],
        "scale": ints["scale"],
        "occlusion": ints["occlusion"],
        "zoom_in": ints["zoom_in"],
        "viewpoint": ints["viewpoint"],
    }


# --------------------------------------------------------------------------- saving


def _item_arrow_schema() -> pa.Schema:
    """Explicit Arrow types, so list columns keep their type even when all are empty."""
    to_arrow = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    fields = []
    for name, dtype in ITEM_COLUMNS.items():
        if name == "segmentation":
            fields.append(pa.field(name, pa.list_(pa.list_(pa.float64()))))
        elif name == "landmarks":
            fields.append(pa.field(name, pa.list_(pa.float64())))
        else:
            fields.append(pa.field(name, to_arrow[dtype]))
    return pa.schema(fields)


def write_item_tables(result: ReadResult, out_dir: Path) -> dict[str, Path]:
    """Write ``items.parquet`` and ``quarantine.parquet`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    items = conform_items(result.items)
    table = pa.Table.from_pandas(items, schema=_item_arrow_schema(), preserve_index=False)
    items_path = out_dir / "items.parquet"
    with atomic_path(items_path) as tmp:
        pq.write_table(table, tmp)
    quarantine_path = write_parquet(
        out_dir / "quarantine.parquet", conform_quarantine(result.quarantine)
    )
    return {"items": items_path, "quarantine": quarantine_path}


def _to_list(value: Any) -> list:
    if value is None:
        return []
    return list(value.tolist() if isinstance(value, np.ndarray) else value)


def read_item_table(path: Path) -> pd.DataFrame:
    """Read an item table, restoring ``segmentation`` (list of lists of float) and
    ``landmarks`` (list of float) as Python lists."""
    df = pd.read_parquet(path)
    seg = [[[float(v) for v in _to_list(p)] for p in _to_list(s)] for s in df["segmentation"]]
    landmarks = [[float(v) for v in _to_list(lm)] for lm in df["landmarks"]]
    df["segmentation"] = pd.Series(seg, index=df.index, dtype=object)
    df["landmarks"] = pd.Series(landmarks, index=df.index, dtype=object)
    return conform_items(df)


def read_quarantine_table(path: Path) -> pd.DataFrame:
    """Read a quarantine table written by :func:`write_item_tables`."""
    return conform_quarantine(pd.read_parquet(path))
