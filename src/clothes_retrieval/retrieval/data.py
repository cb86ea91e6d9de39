"""Crop images for training and embedding: reading, optional in-memory cache, datasets.

The crops table (made by the data layer) has one row per crop: ``crop_path``, ``label``,
``split``, ``identity``, ``source`` (``user`` = consumer photo, ``shop``) and optionally
``dataset``. Decoding a JPEG costs about as much as a small model's forward pass on 2
cores, so :class:`CropDataset` can decode every crop once and keep it as a uint8 (H, W, 3)
tensor, downscaled (aspect kept) to at most ``cache_scale`` × the input size.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

__all__ = [
    "Box",
    "CropDataset",
    "ImageReadError",
    "QUERY_SOURCES",
    "REFERENCE_SOURCES",
    "crop_datasets",
    "crop_image",
    "read_crop",
]

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
QUERY_SOURCES = ("user", "consumer")  # consumer photos: the queries
REFERENCE_SOURCES = ("shop",)  # shop photos: the gallery

# What PIL raises for a file it cannot read (UnidentifiedImageError is an OSError).
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class ImageReadError(OSError):
    """An image could not be read or cropped; the message names the file."""


def crop_image(img: Image.Image, box: Box, name: str = "the image") -> Image.Image:
    """``img`` cropped to ``box`` (pixels, clipped to the image, rounded to whole pixels);
    :class:`ImageReadError` naming ``name`` when the box is empty inside it."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, y1 = max(0.0, x1), max(0.0, y1)
    x2, y2 = min(float(img.width), x2), min(float(img.height), y2)
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise ImageReadError(f"box {tuple(box)} is empty inside {name} ({img.width}×{img.height})")
    return img.crop(
        (round(x1), round(y1), max(round(x2), round(x1) + 1), max(round(y2), round(y1) + 1))
    )


def read_crop(
    path: str | Path, box: Box | None = None, max_size: tuple[int, int] | None = None
) -> Image.Image:
    """The RGB image at ``path``, cropped to ``box`` when given, and shrunk (aspect kept) so
    that it is no larger than needed to cover ``max_size`` = (H, W) (never enlarged)."""
    try:
        with Image.open(path) as im:
            im.load()
            img = im.convert("RGB")
    except _IMAGE_ERRORS as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    if box is not None:
        img = crop_image(img, box, f"image {path}")
    if max_size is not None:
        scale = min(1.0, max(max_size[0] / img.height, max_size[1] / img.width))
        if scale < 1.0:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return img


class CropDataset(Dataset):
    """Items ``(path, box or None)`` -> (transformed image, label).

    ``__getitem__`` takes an index or an ``(index, seed)`` pair (from
    :class:`~clothes_retrieval.retrieval.sampler.ClassBalancedSampler`); with a seed the
    transform's randomness (Python ``random`` and torch's CPU generator, which timm's and
    torchvision's transforms use) is seeded from it and the caller's RNG state is restored.
    """

    def __init__(
        self,
        items: Sequence[tuple[str, Box | None]],
        labels: Sequence[int] | None,
        transform: Callable,
        *,
        max_size: tuple[int, int] | None = None,
        cache: bool = False,
        progress: bool = True,
        desc: str = "caching crops",
    ) -> None:
        self.items = list(items)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and len(self.labels) != len(self.items):
            raise ValueError(f"{len(self.items)} items but {len(self.labels)} labels")
        self.transform = transform
        self.max_size = max_size
        self.cache: list[torch.Tensor] | None = None
        if cache:
            self.cache = [
                torch.from_numpy(np.array(read_crop(path, box, max_size)))  # (H, W, 3) uint8
                for path, box in tqdm(self.items, desc=desc, disable=not progress, leave=False)
            ]

    def __len__(self) -> int:
        return len(self.items)

    def image(self, index: int) -> Image.Image:
        if self.cache is not None:
            return Image.fromarray(self.cache[index].numpy())
        path, box = self.items[index]
        return read_crop(path, box, self.max_size)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            index, seed = key
            img = self.image(index)
            py_state = random.getstate()
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                torch.manual_seed(seed)
                x = self.transform(img)
            random.setstate(py_state)
        else:
            index = key
            x = self.transform(self.image(index))
        label = int(self.labels[index]) if self.labels is not None else -1
        return x, label

    @property
    def cached_bytes(self) -> int:
        return sum(t.numel() for t in self.cache) if self.cache is not None else 0


def estimate_cache_bytes(table: pd.DataFrame, max_size: tuple[int, int]) -> int:
    """Bytes the uint8 cache of ``table``'s crops would take (reads image headers only,
    or the ``width``/``height`` columns when present)."""
    if {"width", "height"} <= set(table.columns):
        sizes = zip(table["width"].to_numpy(), table["height"].to_numpy(), strict=True)
    else:
        sizes = []
        for path in table["crop_path"]:
            try:
                with Image.open(path) as im:
                    sizes.append(im.size)
            except _IMAGE_ERRORS as exc:
                raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    total = 0
    for w, h in sizes:
        scale = min(1.0, max(max_size[0] / h, max_size[1] / w))
        total += 3 * max(1, round(w * scale)) * max(1, round(h * scale))
    return total


def crop_datasets(table: pd.DataFrame) -> pd.Series:
    """Each crop's dataset name: the ``dataset`` column, else the first part of ``identity``."""
    if "dataset" in table.columns:
        return table["dataset"].astype(str)
    return table["identity"].astype(str).str.split("/", n=1).str[0]
