"""A deterministic synthetic dataset in the DeepFashion2 layout, for tests and demos.

:func:`generate_sample_data` writes ``<out>/<split>/image/NNNNNN.jpg`` and
``<out>/<split>/annos/NNNNNN.json`` for the splits ``train`` and ``validation`` with every
annotation field DeepFashion2 has (see ``docs/deepfashion2.md``), plus
``<out>/sample_manifest.json`` (the resolved config, counts, near-duplicate products,
duplicated shop photos and the injected defects).

With ``groups.test`` > 0 it also writes a ``test`` split the way DeepFashion2 ships its
own: ``<out>/test/image/NNNNNN.jpg`` and the image-level info files
``retrieval_test_consumer_information.json`` (the queries) and
``retrieval_test_shop_information.json`` (the gallery), each
``{"images": [{"file_name", "id", "height", "width"}, ...]}``, and no ``annos/``. Its
ground truth stays out of the dataset folder (the manifest has its counts only); pass
``test_ground_truth`` to write its annotations somewhere else. With ``groups.test`` 0 (the
default) the files are byte for byte those written before the test split existed.

What it contains, per split:

- *product groups* (one ``pair_id`` each) of 1-3 products (styles 1..k), each a garment of
  one of the 13 categories with its own fabric (:mod:`clothes_retrieval.data.garments`).
  Some products are *near-duplicates* of another group's product (one subtle change).
- *shop photos*: one product, frontal, on a plain light background (viewpoint 1), some
  duplicated as a near-identical copy (re-encoded at another JPEG quality, or shifted by a
  pixel) for the dedup stage to find.
- *consumer photos*: 1-3 garments worn by people in a cluttered street scene, with scale,
  rotation, perspective, lighting, blur and occlusion; possibly a style-0 garment (no shop
  counterpart).
- ``defects`` deliberately broken records (corrupt image, truncated JSON, bad box, unknown
  category, missing field, missing image) for the validation layer to quarantine.

The same config gives byte-identical files: every photo is drawn from
``np.random.default_rng([seed, split_index, image_id])`` and the plan of each split from
its own generator. The dataset is written to a temporary directory and published whole.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from tqdm import tqdm

from clothes_retrieval.config import FrozenConfig, dump_config
from clothes_retrieval.data.garments import (
    GARMENTS,
    ProductLook,
    near_duplicate_look,
    random_look,
)
from clothes_retrieval.data.sample_render import (
    PhotoItem,
    clip_polygon,
    render_consumer_photo,
    render_shop_photo,
)
from clothes_retrieval.data.schema import CATEGORIES
from clothes_retrieval.io import atomic_dir, write_json

__all__ = [
    "DEFECT_KINDS",
    "ConsumerPhotoConfig",
    "SampleDataConfig",
    "SampleDataSummary",
    "ShopPhotoConfig",
    "SplitGroupsConfig",
    "SplitSummary",
    "TEST_INFO_FILES",
    "generate_sample_data",
]

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validation")  # the annotated splits
TEST_SPLIT = "test"  # images and info files only, as DeepFashion2's test split
# DeepFashion2's names for the test split's info files: consumer photos are the queries,
# shop photos the gallery.
TEST_INFO_FILES: dict[str, str] = {
    "user": "retrieval_test_consumer_information.json",
    "shop": "retrieval_test_shop_information.json",
}
MANIFEST_NAME = "sample_manifest.json"
TRUTH_MANIFEST_NAME = "test_ground_truth.json"
# Injected round-robin, continuing across splits, so 3 per split cover all six kinds.
# The names match the quarantine reasons in ``schema.QUARANTINE_REASONS``.
DEFECT_KINDS: tuple[str, ...] = (
    "corrupt_image",
    "malformed_json",
    "bad_box",
    "unknown_category",
    "missing_field",
    "missing_image",
)
UPPER = (1, 2, 3, 4, 5, 6)
LOWER = (7, 8, 9)
FULL = (10, 11, 12, 13)


# ------------------------------------------------------------------------- config


class SplitGroupsConfig(FrozenConfig):
    """Product groups (pair_ids) per split; >= 13 guarantees every category appears.
    ``test``: groups of the unannotated test split (0: no test split)."""

    train: int = Field(40, ge=1)
    validation: int = Field(24, ge=1)
    test: int = Field(0, ge=0)

    @model_serializer(mode="wrap")
    def _omit_absent_test(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Without a test split the dump (the manifest's ``config``, config digests) is the
        # one from before the field existed: the same sample keeps the same bytes and hash.
        data = handler(self)
        if self.test == 0:
            data.pop("test", None)
        return data


class ConsumerPhotoConfig(FrozenConfig):
    """Consumer ("user") photos: people wearing the garments in a street scene."""

    long_side: int = Field(192, ge=48, le=2048)  # pixels; 4:3, 3:4 or square
    photos_per_group_min: int = Field(2, ge=1)
    photos_per_group_max: int = Field(4, ge=1)
    max_items: int = Field(3, ge=1, le=3)  # garments per photo, distractor included
    distractor_prob: float = Field(0.35, ge=0.0, le=1.0)  # add a style-0 garment
    occluder_prob: float = Field(0.45, ge=0.0, le=1.0)  # a bag / pole / hand in front
    side_view_prob: float = Field(0.2, ge=0.0, le=1.0)  # viewpoint 3 instead of 2

    @model_validator(mode="after")
    def _check_range(self) -> ConsumerPhotoConfig:
        if self.photos_per_group_min > self.photos_per_group_max:
            raise ValueError("photos_per_group_min must be <= photos_per_group_max")
        return self


class ShopPhotoConfig(FrozenConfig):
    """Shop photos: one product, frontal, plain light background (viewpoint 1)."""

    long_side: int = Field(160, ge=48, le=2048)  # pixels; square, 3:4 for tall garments
    photos_per_style_min: int = Field(1, ge=1)
    photos_per_style_max: int = Field(2, ge=1)
    duplicate_fraction: float = Field(0.2, ge=0.0, le=1.0)  # shop photos given a copy
    duplicate_jpeg_quality: int = Field(70, ge=30, le=100)  # re-encoded copies use this

    @model_validator(mode="after")
    def _check_range(self) -> ShopPhotoConfig:
        if self.photos_per_style_min > self.photos_per_style_max:
            raise ValueError("photos_per_style_min must be <= photos_per_style_max")
        return self


class SampleDataConfig(FrozenConfig):
    """Everything that shapes the synthetic sample; the same config gives the same bytes."""

    seed: int = Field(0, ge=0)
    groups: SplitGroupsConfig = Field(default_factory=SplitGroupsConfig)
    max_products_per_group: int = Field(3, ge=1, le=3)  # styles per pair_id: 1..this
    near_duplicate_fraction: float = Field(0.15, ge=0.0, le=1.0)  # of products
    consumer: ConsumerPhotoConfig = Field(default_factory=ConsumerPhotoConfig)
    shop: ShopPhotoConfig = Field(default_factory=ShopPhotoConfig)
    defects: int = Field(3, ge=0)  # broken records injected per split; 0 disables
    jpeg_quality: int = Field(90, ge=30, le=100)


# ------------------------------------------------------------------------ summary


@dataclass(frozen=True)
class SplitSummary:
    """Counts of one split. ``images`` counts every annotation record, defects included;
    the user / shop / item counts are of the clean records only."""

    groups: int
    products: int
    images: int
    user_images: int
    shop_images: int
    items: int
    defects: int
    shop_duplicates: int
    near_duplicate_products: int


@dataclass(frozen=True)
class SampleDataSummary:
    """What :func:`generate_sample_data` wrote, and where."""

    out_dir: Path
    splits: dict[str, SplitSummary] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return sum(s.images for s in self.splits.values())

    @property
    def items(self) -> int:
        return sum(s.items for s in self.splits.values())


# ------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class _Product:
    pair_id: int
    style: int
    category_id: int
    look: ProductLook


@dataclass(frozen=True)
class _Photo:
    source: str  # "user" or "shop"
    pair_id: int
    styles: tuple[int, ...]
    duplicate_of: int | None = None  # index into the plan of the photo this copies
    duplicate_kind: str | None = None  # "requality" or "shift"
    defect: str | None = None


@dataclass
class _SplitPlan:
    products: dict[tuple[int, int], _Product]
    near_duplicates: list[dict[str, Any]]
    photos: list[_Photo]  # in image-id order (ids are 1-based positions)
    seed_ids: list[int]  # image id whose generator draws the photo (a copy: the original's)


def _group_categories(rng: np.random.Generator, primary: int, k: int) -> list[int]:
    """Categories of a group: the primary plus complements (a top gets trousers, ...)."""
    cats = [primary]
    if k >= 2:
        if primary in LOWER:
            pool = UPPER
        elif primary in FULL:
            pool = (3, 4)  # a dress with a jacket
        else:
            pool = LOWER
        if rng.random() < 0.2:
            pool = tuple(CATEGORIES)
        cands = [c for c in pool if c not in cats] or [c for c in CATEGORIES if c not in cats]
        cats.append(int(rng.choice(cands)))
    if k >= 3:
        cands = [c for c in CATEGORIES if c not in cats]
        cats.append(int(rng.choice(cands)))
    return cats


def _plan_split(config: SampleDataConfig, split_index: int, n_groups: int) -> _SplitPlan:
    seed = config.seed
    rng = np.random.default_rng([seed, split_index, 0])
    deck: list[int] = []
    products: dict[tuple[int, int], _Product] = {}
    near: list[dict[str, Any]] = []
    photos: list[_Photo] = []
    for pair_id in range(1, n_groups + 1):
        if not deck:  # a shuffled deck of all 13 categories: 13 groups show every one
            deck = [int(c) for c in rng.permutation(list(CATEGORIES))]
        k = int(rng.integers(1, config.max_products_per_group + 1))
        cats = _group_categories(rng, deck.pop(), k)
        for style, cat in enumerate(cats, start=1):
            lrng = np.random.default_rng([seed, split_index, 1, pair_id, style])
            earlier = [p for p in products.values() if p.category_id == cat]
            if earlier and lrng.random() < config.near_duplicate_fraction:
                src = earlier[int(lrng.integers(0, len(earlier)))]
                look, change = near_duplicate_look(src.look, lrng)
                near.append({"pair_id": pair_id, "style": style, "category_id": cat,
                             "of_pair_id": src.pair_id, "of_style": src.style,
                             "change": change})  # fmt: skip
            else:
                look = random_look(lrng)
            products[(pair_id, style)] = _Product(pair_id, style, cat, look)

        # Consumer photos: the first ones make sure every style is worn at least once.
        n_user = int(
            rng.integers(config.consumer.photos_per_group_min,
                         config.consumer.photos_per_group_max + 1)
        )  # fmt: skip
        uncovered = list(range(1, k + 1))
        for j in range(n_user):
            m = int(rng.integers(1, min(k, config.consumer.max_items) + 1))
            if j == n_user - 1 and len(uncovered) > 1:  # last chance: show the rest
                m = max(m, min(len(uncovered), config.consumer.max_items))
            chosen = uncovered[:m]
            rest = [s for s in range(1, k + 1) if s not in chosen]
            chosen += [int(s) for s in rng.permutation(rest)[: m - len(chosen)]]
            uncovered = [s for s in uncovered if s not in chosen]
            photos.append(_Photo("user", pair_id, tuple(sorted(chosen))))
        for style in range(1, k + 1):
            n_shop = int(
                rng.integers(config.shop.photos_per_style_min,
                             config.shop.photos_per_style_max + 1)
            )  # fmt: skip
            for _ in range(n_shop):
                photos.append(_Photo("shop", pair_id, (style,)))
                if rng.random() < config.shop.duplicate_fraction:
                    kind = "requality" if rng.random() < 0.5 else "shift"
                    photos.append(_Photo("shop", pair_id, (style,), len(photos) - 1, kind))

    # Defect records: extra consumer photos of random groups, broken after rendering.
    for i in range(config.defects):
        kind = DEFECT_KINDS[(split_index * config.defects + i) % len(DEFECT_KINDS)]
        pair_id = int(rng.integers(1, n_groups + 1))
        styles = sorted(s for (p, s) in products if p == pair_id)
        photos.append(_Photo("user", pair_id, tuple(styles[: config.consumer.max_items]),
                             defect=kind))  # fmt: skip

    # Shuffle so that image ids interleave consumer and shop photos, as in DeepFashion2.
    perm = [int(i) for i in rng.permutation(len(photos))]
    new_id = {old: pos + 1 for pos, old in enumerate(perm)}
    ordered = [photos[old] for old in perm]
    seed_ids = [
        new_id[ph.duplicate_of] if ph.duplicate_of is not None else pos + 1
        for pos, ph in enumerate(ordered)
    ]
    return _SplitPlan(products, near, ordered, seed_ids)


# ----------------------------------------------------------------------- rendering


def _columns(
    rng: np.random.Generator, items: list[PhotoItem], max_items: int, distractor_prob: float
) -> list[list[PhotoItem]]:
    """Dress people: each column wears one top-or-dress and/or one lower-body garment."""
    cols: list[list[PhotoItem]] = []

    def slots(col: list[PhotoItem]) -> set[str]:
        regions = {GARMENTS[it.category_id].region for it in col}
        if "full" in regions:
            return set()
        return {"upper", "lower"} - regions

    for it in [items[int(i)] for i in rng.permutation(len(items))]:
        region = GARMENTS[it.category_id].region
        for col in cols:
            if region in slots(col):
                col.append(it)
                break
        else:
            cols.append([it])
    if len(items) < max_items and rng.random() < distractor_prob:
        used = {it.category_id for it in items}
        open_cols = [c for c in cols if slots(c)]
        if open_cols:
            col = open_cols[int(rng.integers(0, len(open_cols)))]
            region = sorted(slots(col))[0]
            pool = LOWER if region == "lower" else UPPER
        else:
            col = []
            cols.append(col)
            pool = tuple(CATEGORIES)
        cands = [c for c in pool if c not in used] or list(pool)
        col.append(PhotoItem(int(rng.choice(cands)), random_look(rng), 0))
    return cols


def _render(
    config: SampleDataConfig, plan: _SplitPlan, photo: _Photo, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    items = [
        PhotoItem(plan.products[(photo.pair_id, s)].category_id,
                  plan.products[(photo.pair_id, s)].look, s)
        for s in photo.styles
    ]  # fmt: skip
    if photo.source == "shop":
        img, records = render_shop_photo(rng, items[0], config.shop.long_side)
    else:
        c = config.consumer
        cols = _columns(rng, items, c.max_items, c.distractor_prob)
        img, records = render_consumer_photo(
            rng, cols, c.long_side, occluder_prob=c.occluder_prob,
            side_view_prob=c.side_view_prob,
        )  # fmt: skip
    anno: dict[str, Any] = {"source": photo.source, "pair_id": photo.pair_id}
    for i, rec in enumerate(records, start=1):
        anno[f"item{i}"] = rec
    return img, anno


def _shift_right(img: np.ndarray, anno: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """A copy moved one pixel right (the left column repeated), annotations to match."""
    h, w = img.shape[:2]
    out = np.concatenate([img[:, :1], img[:, :-1]], axis=1)
    new = dict(anno)
    for key, rec in anno.items():
        if not key.startswith("item"):
            continue
        segs = []
        for poly in rec["segmentation"]:
            p = np.asarray(poly, np.float64).reshape(-1, 2) + [1.0, 0.0]
            segs.append(clip_polygon(p, w, h))
        allp = np.concatenate(segs)
        x1, y1 = np.floor(allp.min(0)).astype(int)
        x2, y2 = np.ceil(allp.max(0)).astype(int)
        lm = list(rec["landmarks"])
        for j in range(0, len(lm), 3):
            if lm[j + 2] > 0:
                lm[j] += 1
                if lm[j] >= w:
                    lm[j : j + 3] = [0, 0, 0]
        new[key] = {
            **rec,
            "bounding_box": [int(max(x1, 0)), int(max(y1, 0)), int(min(x2, w)), int(min(y2, h))],
            "segmentation": [[round(float(c), 2) for c in s.reshape(-1)] for s in segs],
            "landmarks": lm,
        }
    return out, new


def _jpeg_bytes(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    # Baseline, no optimisation: the encoder output is then a pure function of the pixels.
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, optimize=False,
                              progressive=False)  # fmt: skip
    return buf.getvalue()


def _inject(
    kind: str, n: int, img: bytes, anno: dict[str, Any], size: tuple[int, int]
) -> tuple[bytes | None, str, str]:
    """Break a record; returns (image bytes or None, annotation text, detail)."""
    w, _ = size
    text = json.dumps(anno)
    if kind == "corrupt_image":
        return img[: len(img) * 3 // 10], text, "JPEG truncated to its first 30% of bytes"
    if kind == "malformed_json":
        return img, text[: len(text) // 2], "annotation JSON truncated half way"
    item = dict(anno["item1"])
    if kind == "bad_box":
        x1, y1, x2, y2 = item["bounding_box"]
        if n % 2 == 0:
            item["bounding_box"] = [w + 5, y1, w + 40, y2]
            detail = "item1 bounding_box outside the image"
        else:
            item["bounding_box"] = [x1, y1, x1, y2]
            detail = "item1 bounding_box of zero area"
        return img, json.dumps({**anno, "item1": item}), detail
    if kind == "unknown_category":
        item["category_id"], item["category_name"] = 14, "unknown"
        return img, json.dumps({**anno, "item1": item}), "item1 category_id 14"
    if kind == "missing_field":
        if n % 2 == 0:
            rest = {k: v for k, v in anno.items() if k != "source"}
            return img, json.dumps(rest), "image-level 'source' removed"
        del item["style"]
        return img, json.dumps({**anno, "item1": item}), "item1 'style' removed"
    if kind == "missing_image":
        return None, text, "image file not written"
    raise ValueError(f"unknown defect kind {kind!r}; expected one of {DEFECT_KINDS}")


def _rendered(
    config: SampleDataConfig, split_index: int, split: str, plan: _SplitPlan, progress: bool
) -> Iterator[tuple[int, _Photo, np.ndarray, dict[str, Any], int]]:
    """(image id, photo, pixels, annotation, JPEG quality) of each photo of the plan, in
    image-id order; a shop-photo copy is its original's render, shifted or re-encoded."""
    for pos, photo in enumerate(
        tqdm(plan.photos, desc=f"sample {split}", unit="img", disable=not progress)
    ):
        rng = np.random.default_rng([config.seed, split_index, plan.seed_ids[pos]])
        img, anno = _render(config, plan, photo, rng)
        quality = config.jpeg_quality
        if photo.duplicate_kind == "shift":
            img, anno = _shift_right(img, anno)
        elif photo.duplicate_kind == "requality":
            quality = config.shop.duplicate_jpeg_quality
        yield pos + 1, photo, img, anno, quality


def _duplicate_entry(plan: _SplitPlan, image_id: int, photo: _Photo) -> dict[str, Any]:
    return {"image_id": image_id, "image_file": f"{image_id:06d}.jpg",
            "duplicate_of": f"{plan.seed_ids[image_id - 1]:06d}.jpg",
            "kind": photo.duplicate_kind}  # fmt: skip


def _products_entry(plan: _SplitPlan) -> list[dict[str, Any]]:
    return [
        {"pair_id": p.pair_id, "style": p.style, "category_id": p.category_id,
         "texture": p.look.texture}
        for p in plan.products.values()
    ]  # fmt: skip


def _write_split(
    config: SampleDataConfig, split_index: int, split: str, root: Path, progress: bool
) -> tuple[SplitSummary, dict[str, Any]]:
    n_groups = getattr(config.groups, split)
    plan = _plan_split(config, split_index, n_groups)
    (root / split / "image").mkdir(parents=True)
    (root / split / "annos").mkdir(parents=True)
    defects: list[dict[str, Any]] = []
    dups: list[dict[str, Any]] = []
    n_user = n_shop = n_items = 0
    kind_seen: dict[str, int] = {}
    for image_id, photo, img, anno, quality in _rendered(
        config, split_index, split, plan, progress
    ):
        if photo.duplicate_of is not None:
            dups.append(_duplicate_entry(plan, image_id, photo))
        data: bytes | None = _jpeg_bytes(img, quality)
        text = json.dumps(anno)
        if photo.defect is not None:
            n = kind_seen.get(photo.defect, 0) + split_index
            kind_seen[photo.defect] = kind_seen.get(photo.defect, 0) + 1
            data, text, detail = _inject(photo.defect, n, data, anno, (img.shape[1], img.shape[0]))
            defects.append({"split": split, "image_id": image_id,
                            "image_file": f"{image_id:06d}.jpg",
                            "annotation_file": f"{image_id:06d}.json",
                            "kind": photo.defect, "detail": detail})  # fmt: skip
        else:
            n_user += photo.source == "user"
            n_shop += photo.source == "shop"
            n_items += sum(k.startswith("item") for k in anno)
        if data is not None:
            (root / split / "image" / f"{image_id:06d}.jpg").write_bytes(data)
        (root / split / "annos" / f"{image_id:06d}.json").write_text(text)

    summary = SplitSummary(
        groups=n_groups, products=len(plan.products), images=len(plan.photos),
        user_images=n_user, shop_images=n_shop, items=n_items, defects=len(defects),
        shop_duplicates=len(dups), near_duplicate_products=len(plan.near_duplicates),
    )  # fmt: skip
    manifest_part = {
        "counts": summary.__dict__,
        "products": _products_entry(plan),
        "near_duplicates": plan.near_duplicates,
        "shop_duplicates": dups,
        "defects": defects,
    }
    return summary, manifest_part


def _write_test_split(
    config: SampleDataConfig, split_index: int, root: Path, truth: Path | None, progress: bool
) -> tuple[SplitSummary, dict[str, Any]]:
    """Render the test split like the others, but write only its photos and the two info
    files. Returns its summary and its ground truth (products, duplicates); ``truth``: a
    folder for its annotations (``annos/NNNNNN.json``), None to write none."""
    # No defects: DeepFashion2's test images are clean, and there are no annotations to break.
    plan = _plan_split(config.model_copy(update={"defects": 0}), split_index, config.groups.test)
    (root / TEST_SPLIT / "image").mkdir(parents=True)
    if truth is not None:
        (truth / "annos").mkdir(parents=True)
    info: dict[str, list[dict[str, Any]]] = {source: [] for source in TEST_INFO_FILES}
    dups: list[dict[str, Any]] = []
    n_items = 0
    for image_id, photo, img, anno, quality in _rendered(
        config, split_index, TEST_SPLIT, plan, progress
    ):
        if photo.duplicate_of is not None:
            dups.append(_duplicate_entry(plan, image_id, photo))
        name = f"{image_id:06d}.jpg"
        (root / TEST_SPLIT / "image" / name).write_bytes(_jpeg_bytes(img, quality))
        info[photo.source].append(
            {"file_name": name, "id": image_id, "height": int(img.shape[0]),
             "width": int(img.shape[1])}
        )  # fmt: skip
        n_items += sum(k.startswith("item") for k in anno)
        if truth is not None:
            (truth / "annos" / f"{image_id:06d}.json").write_text(json.dumps(anno))
    for source, file_name in TEST_INFO_FILES.items():
        (root / TEST_SPLIT / file_name).write_text(json.dumps({"images": info[source]}))
    summary = SplitSummary(
        groups=config.groups.test, products=len(plan.products), images=len(plan.photos),
        user_images=len(info["user"]), shop_images=len(info["shop"]), items=n_items,
        defects=0, shop_duplicates=len(dups), near_duplicate_products=len(plan.near_duplicates),
    )  # fmt: skip
    truth_part = {
        "counts": summary.__dict__,
        "products": _products_entry(plan),
        "near_duplicates": plan.near_duplicates,
        "shop_duplicates": dups,
    }
    return summary, truth_part


def generate_sample_data(
    config: SampleDataConfig,
    out_dir: Path,
    *,
    progress: bool = True,
    test_ground_truth: Path | None = None,
) -> SampleDataSummary:
    """Write the synthetic DeepFashion2-layout dataset to ``out_dir``, replacing it whole.

    The dataset is built in a temporary sibling directory and renamed into place, so an
    interrupted run leaves either the previous ``out_dir`` or nothing, never half a dataset.
    ``test_ground_truth`` (with ``groups.test`` > 0): a folder outside ``out_dir``, replaced
    whole, for the test split's annotations (``annos/NNNNNN.json``, the format of the other
    splits) and ``test_ground_truth.json`` (its counts, products and duplicated shop photos).
    """
    out_dir = Path(out_dir)
    if test_ground_truth is not None:
        test_ground_truth = Path(test_ground_truth)
        if config.groups.test == 0:
            raise ValueError(
                "test_ground_truth is given but groups.test is 0: there is no test split "
                "to write the ground truth of; set groups.test > 0"
            )
        if test_ground_truth.absolute().is_relative_to(out_dir.absolute()):
            raise ValueError(
                f"test_ground_truth {test_ground_truth} lies inside the dataset {out_dir}: "
                "the test split's ground truth must stay out of it; choose another folder"
            )
    t0 = time.perf_counter()
    logger.info("generating sample data (seed %d) into %s", config.seed, out_dir)
    splits: dict[str, SplitSummary] = {}
    manifest: dict[str, Any] = {"format": "deepfashion2", "config": dump_config(config),
                                "splits": {}, "defects": []}  # fmt: skip
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_dir(out_dir))
        for split_index, split in enumerate(SPLITS):
            summary, part = _write_split(config, split_index, split, tmp, progress)
            splits[split] = summary
            manifest["defects"] += part.pop("defects")
            manifest["splits"][split] = part
        if config.groups.test > 0:
            # Entered last, so published first: the dataset never exists without its truth.
            truth = (
                stack.enter_context(atomic_dir(test_ground_truth)) if test_ground_truth else None
            )
            summary, truth_part = _write_test_split(config, len(SPLITS), tmp, truth, progress)
            splits[TEST_SPLIT] = summary
            manifest["splits"][TEST_SPLIT] = {"counts": truth_part["counts"]}
            if truth is not None:
                write_json(truth / TRUTH_MANIFEST_NAME, {"format": "deepfashion2",
                           "split": TEST_SPLIT, "dataset": str(out_dir), **truth_part})  # fmt: skip
        write_json(tmp / MANIFEST_NAME, manifest)
    result = SampleDataSummary(out_dir=out_dir, splits=splits)
    logger.info(
        "sample data: %d images, %d items in %.1f s (%s)", result.images, result.items,
        time.perf_counter() - t0,
        ", ".join(f"{k}: {v.images} images, {v.defects} defects" for k, v in splits.items()),
    )  # fmt: skip
    return result
