"""What every source adapter shares: the registry, the result type and row builders.

A *source* is one dataset in its own native layout (DeepFashion2's JSON per image,
Street2Shop's pair files, CCP's MATLAB label maps, a folder of product photos sorted by
class, ...). Its adapter reads that layout into the two tables of
:mod:`clothes_retrieval.data.schema`: the item table (one row per garment) and the
quarantine table (one row per rejected record, with a reason and a message saying what to
do). Every later stage reads only those tables.

Each source declares its own category set (``category_id`` / ``category_name`` in its items
are the source's own); mapping to a shared taxonomy is data in ``configs/taxonomy/``
(:mod:`clothes_retrieval.data.taxonomy`), never code in an adapter.

Adding a source: write ``read_<name>(root, *, splits=..., progress=...) -> SourceTables`` in
a module of this package, decorate it with :func:`register_source`, import the module in
``sources/__init__.py``, map its categories in the taxonomies that should use it, and test
it on a fixture in its native format (see ``tests/data/sources/``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from PIL import Image

from clothes_retrieval.data.schema import (
    QUARANTINE_REASONS,
    conform_items,
    conform_quarantine,
    empty_items,
    empty_quarantine,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "SOURCES",
    "Rejected",
    "SourceReader",
    "SourceSpec",
    "SourceTables",
    "TableBuilder",
    "image_size",
    "images_in",
    "numbered",
    "read_source",
    "register_source",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# What PIL raises for a file it cannot read (UnidentifiedImageError is an OSError).
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@dataclass(frozen=True)
class SourceTables:
    """An adapter's output: items, rejected records, and the source's own category set."""

    dataset: str
    items: pd.DataFrame  # ITEM_COLUMNS
    quarantine: pd.DataFrame  # QUARANTINE_COLUMNS
    categories: dict[int, str]  # category_id -> name, the source's own set


class SourceReader(Protocol):
    def __call__(self, root: Path, **options: Any) -> SourceTables: ...


@dataclass(frozen=True)
class SourceSpec:
    """One registered source: its name, what it is, and its reader."""

    name: str
    description: str
    reader: Callable[..., SourceTables]
    layout: str  # the native layout, one line, for error messages and the README


SOURCES: dict[str, SourceSpec] = {}


def register_source(name: str, *, description: str, layout: str) -> Callable:
    """Decorator: register ``read_<name>(root, **options) -> SourceTables`` under ``name``."""

    def wrap(fn: Callable[..., SourceTables]) -> Callable[..., SourceTables]:
        if name in SOURCES:
            raise ValueError(f"source {name!r} is registered twice")
        SOURCES[name] = SourceSpec(name, description, fn, layout)
        return fn

    return wrap


def read_source(name: str, root: str | Path, **options: Any) -> SourceTables:
    """Read source ``name`` at ``root`` with its adapter.

    Raises ``KeyError`` for an unknown source and ``FileNotFoundError`` (naming the expected
    layout) when ``root`` does not exist.
    """
    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; registered: {sorted(SOURCES)}")
    spec = SOURCES[name]
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"{name}: no dataset folder at {root}; expected layout: {spec.layout}"
        )
    tables = spec.reader(root.resolve(), **options)
    log.info(
        "%s: %d items from %d images, %d records quarantined (%s)",
        name,
        len(tables.items),
        tables.items["image_path"].nunique() if len(tables.items) else 0,
        len(tables.quarantine),
        root,
    )
    return tables


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, decoding it fully so a truncated file is caught.

    Raises ``OSError`` with the file named when it cannot be read.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return int(im.width), int(im.height)
    except _IMAGE_ERRORS as exc:
        raise OSError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from exc


class Rejected(Exception):
    """A record an adapter rejects: ``reason`` is one of ``QUARANTINE_REASONS``."""

    def __init__(self, reason: str, message: str, path: Path | str) -> None:
        if reason not in QUARANTINE_REASONS:
            raise ValueError(f"unknown quarantine reason {reason!r}")
        super().__init__(message)
        self.reason, self.message, self.path = reason, message, str(path)


class TableBuilder:
    """Collects item and quarantine rows for one dataset and types them at the end.

    Fields a source does not annotate get neutral values: no polygons or landmarks,
    ``pair_id``/``style`` 0 (no instance pairs), and 0 (= unknown) for DeepFashion2's
    scale / occlusion / zoom_in / viewpoint.
    """

    def __init__(self, dataset: str, categories: Mapping[int, str]) -> None:
        self.dataset = dataset
        self.categories = dict(categories)
        self._ids = {name: cid for cid, name in self.categories.items()}
        self.items: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []

    def category_id(self, name: str, path: Path | str = "") -> int:
        """The id of category ``name``; :class:`Rejected` (``unknown_category``) if absent."""
        if name not in self._ids:
            raise Rejected(
                "unknown_category",
                f"category {name!r} is not in {self.dataset}'s category set "
                f"{sorted(self._ids)}: fix the annotation or declare the category",
                path,
            )
        return self._ids[name]

    def add_item(
        self,
        *,
        split: str,
        image_id: int,
        image_path: Path | str,
        size: tuple[int, int],
        source: str,
        item_index: int,
        category: str,
        box: tuple[float, float, float, float],
        pair_id: int = 0,
        style: int = 0,
        segmentation: list[list[float]] | None = None,
    ) -> None:
        """Add one garment; raises :class:`Rejected` (``bad_box``) for a box outside the
        image or of zero area, so the caller can quarantine it."""
        width, height = size
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
            raise Rejected(
                "bad_box",
                f"box {[x1, y1, x2, y2]} is outside the {width}x{height} image or empty: "
                "fix the annotation (boxes are x1, y1, x2, y2 in pixels)",
                image_path,
            )
        self.items.append(
            {
                "item_uid": f"{self.dataset}/{split}/{int(image_id):06d}/{item_index}",
                "dataset": self.dataset,
                "split": split,
                "image_id": int(image_id),
                "image_path": str(image_path),
                "image_width": width,
                "image_height": height,
                "source": source,
                "pair_id": int(pair_id),
                "style": int(style),
                "item_index": int(item_index),
                "category_id": self.category_id(category, image_path),
                "category_name": category,
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "segmentation": segmentation or [],
                "landmarks": [],
                "scale": 0,
                "occlusion": 0,
                "zoom_in": 0,
                "viewpoint": 0,
            }
        )

    def reject(
        self,
        split: str | None,
        image_id: int | None,
        item_index: int | None,
        error: Rejected,
    ) -> None:
        # One line per record at DEBUG (a crawled dataset can have thousands of dead links);
        # tables() logs a summary per reason.
        log.debug("%s: quarantined %s: %s", self.dataset, error.path, error.message)
        self.rejected.append(
            {
                "dataset": self.dataset,
                "split": split,
                "image_id": image_id,
                "item_index": item_index,
                "path": error.path,
                "reason": error.reason,
                "message": error.message,
            }
        )

    def tables(self) -> SourceTables:
        items = conform_items(pd.DataFrame(self.items)) if self.items else empty_items()
        if self.items and items["item_uid"].duplicated().any():
            dup = items.loc[items["item_uid"].duplicated(), "item_uid"].iloc[0]
            raise ValueError(f"{self.dataset}: item_uid {dup} occurs twice (adapter bug)")
        quarantine = (
            conform_quarantine(pd.DataFrame(self.rejected)) if self.rejected else empty_quarantine()
        )
        if len(quarantine):
            counts = quarantine["reason"].value_counts()
            first = quarantine.iloc[0]
            log.warning(
                "%s: %d records quarantined (%s); first: %s: %s",
                self.dataset,
                len(quarantine),
                ", ".join(f"{k} {v}" for k, v in counts.items()),
                first["path"],
                first["message"],
            )
        return SourceTables(self.dataset, items, quarantine, dict(self.categories))


def images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def numbered(paths: Iterable[Path]) -> dict[int, Path]:
    """Paths by the integer of their stem (``0042.jpg`` -> 42); other names are skipped."""
    out: dict[int, Path] = {}
    for p in paths:
        if p.stem.isdigit():
            out[int(p.stem)] = p
    return out
