"""Tiny DeepFashion2-layout datasets written into tmp_path (a few small images made with PIL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def make_item(
    category_id: int = 1,
    style: int = 1,
    box: tuple[float, float, float, float] = (10, 8, 50, 40),
    **overrides: Any,
) -> dict[str, Any]:
    """One ``itemN`` entry: a diamond polygon and two landmarks inside ``box``."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    item = {
        "category_id": category_id,
        "category_name": "whatever the annotator wrote",
        "style": style,
        "bounding_box": list(box),
        "segmentation": [[cx, y1, x2, cy, cx, y2, x1, cy]],
        "landmarks": [cx, cy, 2, x1 + 1, y1 + 1, 1],
        "scale": 2,
        "occlusion": 1,
        "zoom_in": 1,
        "viewpoint": 2,
    }
    item.update(overrides)
    return item


def smooth_image(width: int, height: int, seed: int) -> Image.Image:
    """Random smooth blobs: textured enough for perceptual hashes to tell images apart."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)


class DF2Builder:
    """Writes ``root/<split>/image/NNNNNN.jpg`` and ``root/<split>/annos/NNNNNN.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def image_path(self, split: str, image_id: int) -> Path:
        return self.root / split / "image" / f"{image_id:06d}.jpg"

    def anno_path(self, split: str, image_id: int) -> Path:
        return self.root / split / "annos" / f"{image_id:06d}.json"

    def ensure_split(self, split: str) -> None:
        (self.root / split / "image").mkdir(parents=True, exist_ok=True)
        (self.root / split / "annos").mkdir(parents=True, exist_ok=True)

    def image(
        self,
        split: str,
        image_id: int,
        size: tuple[int, int] = (80, 60),
        seed: int | None = None,
        quality: int = 95,
        picture: Image.Image | None = None,
    ) -> Path:
        self.ensure_split(split)
        path = self.image_path(split, image_id)
        if picture is None:
            picture = smooth_image(*size, seed=image_id if seed is None else seed)
        picture.save(path, "JPEG", quality=quality)
        return path

    def anno(self, split: str, image_id: int, content: dict[str, Any] | str) -> Path:
        self.ensure_split(split)
        path = self.anno_path(split, image_id)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    def record(
        self,
        split: str,
        image_id: int,
        source: str,
        pair_id: int,
        items: list[dict[str, Any]],
        size: tuple[int, int] = (80, 60),
        seed: int | None = None,
    ) -> None:
        self.image(split, image_id, size=size, seed=seed)
        anno: dict[str, Any] = {"source": source, "pair_id": pair_id}
        anno.update({f"item{i}": item for i, item in enumerate(items, start=1)})
        self.anno(split, image_id, anno)


# The good dataset: 7 items in 5 images. Positive pairs: pair 1 style 1 (images 1 and 2),
# pair 2 style 1 (images 3 and 4); image 4 item2 (pair 2 style 2) and image 1 item2
# (style 0) have no partner; train image 1 reuses an image id of validation.
_TOP, _TROUSERS, _SHORTS, _SKIRT, _LONG_TOP = 1, 8, 7, 9, 2
GOOD_RECORDS = [
    # split, image_id, source, pair_id, items (category, style, box), image size
    ("validation", 1, "user", 1,
     [make_item(_TOP, 1, (10, 8, 50, 40)), make_item(_TROUSERS, 0, (5, 30, 40, 58))], (80, 60)),
    ("validation", 2, "shop", 1, [make_item(_TOP, 1, (20, 10, 70, 60))], (90, 70)),
    ("validation", 3, "user", 2, [make_item(_SHORTS, 1, (12, 12, 60, 50))], (80, 60)),
    ("validation", 4, "shop", 2,
     [make_item(_SHORTS, 1, (4, 6, 44, 46)), make_item(_SKIRT, 2, (40, 10, 76, 56))], (80, 60)),
    ("train", 1, "user", 3, [make_item(_LONG_TOP, 1, (0, 0, 30, 30))], (64, 48)),
]  # fmt: skip
GOOD_ITEM_COUNT = 7


def build_good(builder: DF2Builder) -> DF2Builder:
    for split, image_id, source, pair_id, items, size in GOOD_RECORDS:
        builder.record(split, image_id, source, pair_id, items, size=size)
    return builder


@pytest.fixture
def df2(tmp_path: Path) -> DF2Builder:
    """An empty builder rooted at tmp_path/df2."""
    return DF2Builder(tmp_path / "df2")


@pytest.fixture
def good_df2(df2: DF2Builder) -> DF2Builder:
    """The good dataset (GOOD_RECORDS) written into tmp_path."""
    return build_good(df2)


@pytest.fixture
def item_factory():
    return make_item
