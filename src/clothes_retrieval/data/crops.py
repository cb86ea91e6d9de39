"""Retrieval crops: one JPEG per garment, an identity label, and near-duplicate removal.

Identity: a consumer and a shop item form a positive pair when they share ``pair_id`` and
``style > 0`` (DeepFashion2's rule), so the identity of an item is
``"{dataset}/{split}/{pair_id}/{style}"``. Style-0 items never form pairs; when they are
included (``include_style_zero``) each is its own identity,
``"{dataset}/{split}/{pair_id}/0/{image_id:06d}/{item_index}"``, so a metric-learning loss
never treats two of them as positives. With ``identity="category"`` (category-level
retrieval) the identity is ``"category/{category_name}"`` instead, for every item; the
``dataset`` column keeps each crop's source. ``label`` is a dense integer id of the identity,
assigned per split in sorted identity order over the crops that are kept (0..K-1).

De-duplication: DeepFashion2 repeats shop photos (the same picture under several image
ids). Each crop gets a perceptual hash (``imagehash.phash``); going through crops in
``item_uid`` order, a crop whose hash is within ``max_hamming`` bits of an already kept
crop in the same scope (same identity, or everything for ``dedup_scope="global"``) is
removed and listed in ``removed_duplicates.parquet``. The search uses multi-index
hashing: split the hash into ``max_hamming + 1`` bit segments; by the pigeonhole
principle two hashes within ``max_hamming`` bits agree exactly on at least one segment,
so only crops sharing a segment value are compared (numpy popcount). That is exact, and
near-linear at DeepFashion2 scale (~300k crops) instead of an O(N²) loop.

Output (``out_dir`` is owned by this function and replaced whole, atomically)::

    out_dir/<split>/<source>/<item_uid with / replaced by _>.jpg
    out_dir/crops.parquet              one row per written crop (CROP_COLUMNS)
    out_dir/removed_duplicates.parquet item_uid, duplicate_of, hamming
    out_dir/skipped.parquet            item_uid, image_path, reason, message
    out_dir/crop_config.json           the resolved CropConfig
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from pydantic import Field
from tqdm.auto import tqdm

from clothes_retrieval.config import FrozenConfig, dump_config
from clothes_retrieval.data.schema import ITEM_COLUMNS
from clothes_retrieval.io import atomic_dir, write_json, write_parquet

__all__ = [
    "CROP_COLUMNS",
    "CropConfig",
    "CropExportResult",
    "export_retrieval_crops",
    "item_identity",
    "near_duplicates",
]

log = logging.getLogger(__name__)

# What PIL raises for a file it cannot read (UnidentifiedImageError is an OSError); a size
# that no longer matches the item table is raised as ValueError below.
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

CROP_COLUMNS: dict[str, str] = {
    "item_uid": "string",
    "dataset": "string",  # the source dataset (selects training sources)
    "split": "string",
    "source": "string",
    "crop_path": "string",  # absolute path of the JPEG
    "identity": "string",
    "label": "int64",  # dense id of identity within its split
    "pair_id": "int64",
    "style": "int64",
    "category_id": "int64",
    "x1": "float64",  # the cropped region in the source image (box + margin, clipped,
    "y1": "float64",  # rounded outwards to whole pixels)
    "x2": "float64",
    "y2": "float64",
    "phash": "string",  # hex of the perceptual hash of the crop as written
    "width": "int64",  # size of the written crop (after downscaling)
    "height": "int64",
}
REMOVED_COLUMNS: dict[str, str] = {
    "item_uid": "string",
    "duplicate_of": "string",
    "hamming": "int64",
}
SKIPPED_COLUMNS: dict[str, str] = {
    "item_uid": "string",
    "image_path": "string",
    "reason": "string",  # "too_small" or "unreadable_image"
    "message": "string",
}


class CropConfig(FrozenConfig):
    """How retrieval crops are cut, sized and de-duplicated."""

    margin: float = Field(0.0, ge=0.0)  # fraction of box w/h added on each side, clipped
    max_side: int | None = Field(256, ge=1)  # downscale larger crops (aspect kept); None: never
    min_side: int = Field(8, ge=1)  # crops with a side below this (before downscaling): skipped
    dedup: bool = True
    hash_size: int = Field(8, ge=2)  # phash of hash_size² bits
    max_hamming: int = Field(4, ge=0)  # distance <= this: near-duplicate
    dedup_scope: Literal["identity", "global"] = "identity"
    include_style_zero: bool = False
    # pair: identities are DeepFashion2 product groups (pair_id + style, see above);
    # category: the identity is the item's category name, ``"category/<name>"``, shared across
    # datasets (category-level retrieval, e.g. product photos sorted by class, after
    # map_to_taxonomy); every item is then used, whatever its style.
    identity: Literal["pair", "category"] = "pair"
    jpeg_quality: int = Field(95, ge=1, le=100)
    # Splits whose items get crops (None: every split). Without the search split, training
    # reports no validation recall, and no query photo is ever cropped for training.
    splits: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CropExportResult:
    """Tables, paths and counts of one crop export (total = written + removed + skipped)."""

    crops: pd.DataFrame
    removed: pd.DataFrame
    skipped: pd.DataFrame
    out_dir: Path
    crops_path: Path
    removed_path: Path
    skipped_path: Path
    total: int  # items considered (style > 0 unless include_style_zero)
    written: int
    removed_duplicates: int
    skipped_too_small: int
    skipped_unreadable: int  # items whose image could not be read
    unreadable_images: int  # distinct images that could not be read


def item_identity(
    dataset: str, split: str, pair_id: int, style: int, image_id: int, item_index: int
) -> str:
    """Identity string of an item (see the module docstring)."""
    if style > 0:
        return f"{dataset}/{split}/{pair_id}/{style}"
    return f"{dataset}/{split}/{pair_id}/0/{image_id:06d}/{item_index}"


def near_duplicates(
    bits: np.ndarray, groups: Sequence[Hashable], max_hamming: int
) -> list[tuple[int, int, int]]:
    """Greedy near-duplicate removal over hashes given in priority order.

    ``bits`` is (N, B) bool (one hash per row). Going through rows in order, row i is a
    duplicate when some earlier *kept* row of the same group lies within ``max_hamming``
    bits. Returns ``(i, kept_j, distance)`` for each removed row, j the closest kept row
    (the earliest among ties).
    """
    bits = np.asarray(bits, dtype=bool)
    n = len(bits)
    bits = bits.reshape(n, -1)  # (N, B)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} hashes")
    n_bits = bits.shape[1]
    packed = np.packbits(bits, axis=1)  # (N, ceil(B / 8)) uint8
    n_seg = max_hamming + 1
    if n_seg > n_bits:
        # Every pair of hashes is within max_hamming: one segment (the group) decides.
        bounds = np.array([0, 0])
    else:
        bounds = np.linspace(0, n_bits, n_seg + 1).astype(int)
    buckets: dict[tuple[Hashable, int, bytes], list[int]] = {}
    removed: list[tuple[int, int, int]] = []
    for i in range(n):
        keys = [
            (groups[i], s, bits[i, bounds[s] : bounds[s + 1]].tobytes())
            for s in range(len(bounds) - 1)
        ]
        cands: set[int] = set()
        for key in keys:
            cands.update(buckets.get(key, ()))
        if cands:
            cand = np.array(sorted(cands), dtype=np.int64)
            dist = np.bitwise_count(packed[cand] ^ packed[i]).sum(axis=1, dtype=np.int64)
            j = int(np.argmin(dist))  # first minimum: the earliest kept row among ties
            if dist[j] <= max_hamming:
                removed.append((i, int(cand[j]), int(dist[j])))
                continue
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return removed


def _typed(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    return pd.DataFrame(rows)[list(columns)].astype(columns).reset_index(drop=True)


def _crop_box(row: Any, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """Box + margin, clipped to the image and rounded outwards to whole pixels."""
    bw, bh = row.x2 - row.x1, row.y2 - row.y1
    x1 = max(0, math.floor(row.x1 - margin * bw))
    y1 = max(0, math.floor(row.y1 - margin * bh))
    x2 = min(width, math.ceil(row.x2 + margin * bw))
    y2 = min(height, math.ceil(row.y2 + margin * bh))
    return x1, y1, x2, y2


def export_retrieval_crops(
    items: pd.DataFrame, out_dir: Path, config: CropConfig, *, progress: bool = True
) -> CropExportResult:
    """Cut, label, de-duplicate and write the retrieval crops of ``items``.

    An unreadable image (or one whose size no longer matches the table) skips its items
    and is recorded in ``skipped.parquet``; it never stops the export.
    """
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise KeyError(f"item table lacks columns {missing}; pass a table from read_deepfashion2")
    if items["item_uid"].duplicated().any():
        dup = items.loc[items["item_uid"].duplicated(), "item_uid"].iloc[0]
        raise ValueError(f"item_uid {dup!r} occurs more than once; crop paths would collide")
    out_dir = Path(out_dir).expanduser().absolute()
    by_category = config.identity == "category"
    sel = items if (config.include_style_zero or by_category) else items[items["style"] > 0]
    if config.splits is not None:
        sel = sel[sel["split"].isin(list(config.splits))]
    sel = sel.sort_values("item_uid", kind="stable").reset_index(drop=True)

    records: list[dict[str, Any]] = []
    hashes: list[np.ndarray] = []
    skipped: list[dict[str, Any]] = []
    unreadable_images = 0

    with atomic_dir(out_dir) as tmp:
        by_image = sel.groupby("image_path", sort=True)
        for image_path, group in tqdm(
            by_image, total=by_image.ngroups, desc="cropping", unit="img", disable=not progress
        ):
            try:
                with Image.open(image_path) as im:
                    image = im.convert("RGB")  # decodes every pixel
                expected = (int(group["image_width"].iloc[0]), int(group["image_height"].iloc[0]))
                if image.size != expected:
                    raise ValueError(
                        f"image is {image.size[0]}x{image.size[1]} but the item table says "
                        f"{expected[0]}x{expected[1]}; the file changed: re-read the dataset"
                    )
            except _IMAGE_ERRORS as exc:
                unreadable_images += 1
                message = f"{image_path}: cannot use image ({type(exc).__name__}: {exc})"
                log.warning("%s; skipping its %d items", message, len(group))
                skipped.extend(
                    {
                        "item_uid": uid,
                        "image_path": image_path,
                        "reason": "unreadable_image",
                        "message": message,
                    }
                    for uid in group["item_uid"]
                )
                continue

            width, height = image.size
            for row in group.itertuples(index=False):
                x1, y1, x2, y2 = _crop_box(row, width, height, config.margin)
                cw, ch = x2 - x1, y2 - y1
                if min(cw, ch) < config.min_side:
                    skipped.append(
                        {
                            "item_uid": row.item_uid,
                            "image_path": image_path,
                            "reason": "too_small",
                            "message": f"crop {cw}x{ch} px has a side below min_side="
                            f"{config.min_side}",
                        }
                    )
                    continue
                crop = image.crop((x1, y1, x2, y2))
                if config.max_side is not None and max(cw, ch) > config.max_side:
                    scale = config.max_side / max(cw, ch)
                    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
                    crop = crop.resize(size, Image.Resampling.LANCZOS)
                phash = imagehash.phash(crop, hash_size=config.hash_size)
                rel = Path(row.split) / row.source / f"{row.item_uid.replace('/', '_')}.jpg"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                crop.save(tmp / rel, "JPEG", quality=config.jpeg_quality)
                records.append(
                    {
                        "item_uid": row.item_uid,
                        "dataset": row.dataset,
                        "split": row.split,
                        "source": row.source,
                        "crop_path": str(out_dir / rel),
                        "_rel": rel,
                        "identity": f"category/{row.category_name}"
                        if by_category
                        else item_identity(
                            row.dataset,
                            row.split,
                            row.pair_id,
                            row.style,
                            row.image_id,
                            row.item_index,
                        ),
                        "pair_id": row.pair_id,
                        "style": row.style,
                        "category_id": row.category_id,
                        "x1": float(x1),
                        "y1": float(y1),
                        "x2": float(x2),
                        "y2": float(y2),
                        "phash": str(phash),
                        "width": crop.size[0],
                        "height": crop.size[1],
                    }
                )
                hashes.append(np.asarray(phash.hash, dtype=bool).ravel())

        # Crops are visited image by image; de-duplicate in item_uid order.
        order = sorted(range(len(records)), key=lambda k: records[k]["item_uid"])
        records = [records[k] for k in order]
        hashes = [hashes[k] for k in order]
        removed_rows: list[dict[str, Any]] = []
        if config.dedup and records:
            if config.dedup_scope == "identity":
                groups: list[Hashable] = [r["identity"] for r in records]
            else:
                groups = [0] * len(records)
            dups = near_duplicates(np.stack(hashes), groups, config.max_hamming)
            for i, j, dist in dups:
                (tmp / records[i]["_rel"]).unlink()
                removed_rows.append(
                    {
                        "item_uid": records[i]["item_uid"],
                        "duplicate_of": records[j]["item_uid"],
                        "hamming": dist,
                    }
                )
            gone = {i for i, _, _ in dups}
            records = [r for k, r in enumerate(records) if k not in gone]

        # label: placeholder, set per split below (_typed drops the private "_rel" key)
        crops = _typed([r | {"label": 0} for r in records], CROP_COLUMNS)
        for split in crops["split"].unique():
            mask = crops["split"] == split
            identities = sorted(crops.loc[mask, "identity"].unique())
            dense = {ident: k for k, ident in enumerate(identities)}
            crops.loc[mask, "label"] = crops.loc[mask, "identity"].map(dense).astype("int64")
        removed = _typed(removed_rows, REMOVED_COLUMNS)
        skipped_df = _typed(skipped, SKIPPED_COLUMNS)

        write_parquet(tmp / "crops.parquet", crops)
        write_parquet(tmp / "removed_duplicates.parquet", removed)
        write_parquet(tmp / "skipped.parquet", skipped_df)
        write_json(tmp / "crop_config.json", dump_config(config))

    n_small = int((skipped_df["reason"] == "too_small").sum())
    n_unreadable = int((skipped_df["reason"] == "unreadable_image").sum())
    log.info(
        "crops: %d items -> %d written, %d near-duplicates removed (%s scope), %d too small, "
        "%d on %d unreadable images -> %s",
        len(sel),
        len(crops),
        len(removed),
        config.dedup_scope if config.dedup else "no",
        n_small,
        n_unreadable,
        unreadable_images,
        out_dir,
    )
    return CropExportResult(
        crops=crops,
        removed=removed,
        skipped=skipped_df,
        out_dir=out_dir,
        crops_path=out_dir / "crops.parquet",
        removed_path=out_dir / "removed_duplicates.parquet",
        skipped_path=out_dir / "skipped.parquet",
        total=len(sel),
        written=len(crops),
        removed_duplicates=len(removed),
        skipped_too_small=n_small,
        skipped_unreadable=n_unreadable,
        unreadable_images=unreadable_images,
    )
