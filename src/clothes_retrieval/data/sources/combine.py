"""A profile's data sources read into one item table, each item placed by its source's role.

A profile lists its sources by name (``data.sources``): each is a registered adapter over a
folder in that dataset's native layout, with the *role* it plays in the pipeline:

- ``splits``: the dataset's own splits as they are (DeepFashion2's train / validation;
  product folders' train / validation: the shop photos of the search split are then the
  gallery);
- ``training``: every item becomes training data (split ``train``): e.g. the paper's
  Table 1 sets, or the street photos a detector learns from;
- ``queries``: every item is a query (split = the search split; consumer photos only);
- ``gallery``: every item is a gallery entry (split = the search split; shop photos only).

Every source's categories are mapped through one taxonomy (``data.taxonomy``), so the item
table has one category set. De-duplication across sources happens when the crops are cut
(``crops.dedup_scope: global``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd
from pydantic import Field, field_validator, model_validator

from clothes_retrieval.config import FrozenConfig
from clothes_retrieval.data.schema import empty_items, empty_quarantine
from clothes_retrieval.data.sources.base import SOURCES, read_source
from clothes_retrieval.data.taxonomy import Taxonomy, map_to_taxonomy

__all__ = ["ROLES", "SourceConfig", "SourcesResult", "TRAIN_SPLIT", "read_sources"]

log = logging.getLogger(__name__)

TRAIN_SPLIT = "train"
Role = Literal["splits", "training", "queries", "gallery"]
ROLES: tuple[str, ...] = get_args(Role)


class SourceConfig(FrozenConfig):
    """One data source of a profile: an adapter, its folder, and the role it plays."""

    source: str = Field(description="a registered source adapter (data/sources/), e.g. ccp")
    root: Path = Field(description="the dataset folder in the source's native layout")
    role: Role = Field(default="splits", description="|".join(ROLES) + " (module docstring)")
    splits: tuple[str, ...] | None = Field(
        default=None,
        description="the source's own splits read (None: see default_splits)",
    )
    photos: tuple[int, int] | None = Field(
        default=None,
        description="inclusive photo-number range (numbered sources such as ccp); None: all",
    )
    max_per_class: int | None = Field(
        default=None, ge=1, description="keep the first N items per split and class (smoke runs)"
    )
    dvc_file: Path | None = Field(
        default=None,
        description=".dvc file tracking the root (or a parent): its md5 is the data version; "
        "None or a missing file: a fingerprint of the folder",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments of the adapter"
    )

    @field_validator("source")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in SOURCES:
            raise ValueError(f"unknown source {v!r}; registered: {sorted(SOURCES)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        if self.photos is not None:
            lo, hi = self.photos
            if lo > hi:
                raise ValueError(f"photos: range {lo}..{hi} is empty")
            params = inspect.signature(SOURCES[self.source].reader).parameters
            if "image_ids" not in params:
                raise ValueError(f"photos: source {self.source!r} is not numbered by photo")
        reserved = {"root", "progress", "split", "splits", "image_ids"} & set(self.options)
        if reserved:
            raise ValueError(f"options: {sorted(reserved)} are set by the profile, not options")
        return self

    @property
    def dataset(self) -> str:
        """The dataset name its items carry (the adapter's default, or options.dataset)."""
        if "dataset" in self.options:
            return str(self.options["dataset"])
        default = inspect.signature(SOURCES[self.source].reader).parameters.get("dataset")
        return str(default.default) if default is not None else self.source

    def overlaps(self, other: SourceConfig) -> bool:
        """True when both read some of the same photos (same adapter and folder)."""
        if self.source != other.source or Path(self.root).resolve() != Path(other.root).resolve():
            return False
        if self.photos is None or other.photos is None:
            return True
        return self.photos[0] <= other.photos[1] and other.photos[0] <= self.photos[1]

    def contains(self, other: SourceConfig) -> bool:
        """True when every photo ``other`` reads is one this source reads."""
        if not self.overlaps(other):
            return False
        if self.photos is None:
            return True
        return other.photos is not None and (
            self.photos[0] <= other.photos[0] and other.photos[1] <= self.photos[1]
        )


@dataclass(frozen=True)
class SourcesResult:
    items: pd.DataFrame  # ITEM_COLUMNS, one category set (the taxonomy's)
    quarantine: pd.DataFrame
    per_source: dict[str, int]  # items kept per profile source name


def default_splits(spec: SourceConfig, search_split: str) -> tuple[str, ...]:
    """The source splits read when the profile gives none: train and the search split for
    role ``splits``, ``train`` for ``training``, the search split for queries / gallery."""
    if spec.splits is not None:
        return tuple(spec.splits)
    if spec.role == "splits":
        return tuple(dict.fromkeys((TRAIN_SPLIT, search_split)))
    return (TRAIN_SPLIT,) if spec.role == "training" else (search_split,)


def _adapter_options(spec: SourceConfig, search_split: str, progress: bool) -> dict[str, Any]:
    params = inspect.signature(SOURCES[spec.source].reader).parameters
    opts: dict[str, Any] = {"progress": progress, **spec.options}
    splits = default_splits(spec, search_split)
    if "splits" in params:
        opts["splits"] = splits
    elif "split" in params:
        if len(splits) != 1:
            raise ValueError(f"source {spec.source!r} reads one split at a time, not {splits}")
        opts["split"] = splits[0]  # a one-split source (e.g. ccp) labels what it reads
    if spec.photos is not None:
        opts["image_ids"] = list(range(spec.photos[0], spec.photos[1] + 1))
    return opts


def _cap_per_class(items: pd.DataFrame, n: int | None) -> pd.DataFrame:
    if n is None or items.empty:
        return items
    return (
        items.sort_values(["split", "category_name", "image_id"], kind="stable")
        .groupby(["split", "category_name"], sort=True)
        .head(n)
        .reset_index(drop=True)
    )


def _place(items: pd.DataFrame, name: str, spec: SourceConfig, search_split: str) -> pd.DataFrame:
    """The items in the pipeline split of the source's role (checked against its photos)."""
    if spec.role == "splits":
        return items
    if spec.role in ("queries", "gallery"):
        want = "user" if spec.role == "queries" else "shop"
        wrong = items["source"] != want
        if wrong.any():
            raise ValueError(
                f"data.sources.{name}: role {spec.role!r} takes {want} photos, but "
                f"{int(wrong.sum())} items are {'shop' if want == 'user' else 'user'} photos "
                f"(first: {items.loc[wrong, 'image_path'].iloc[0]}); change its role"
            )
        split = search_split
    else:
        split = TRAIN_SPLIT
    out = items.copy()
    if (out["split"] != split).any():
        # One pool: keep the origin split in item_uid so uids stay unique.
        out["item_uid"] = [
            f"{d}/{split}:{u.split('/', 1)[1]}"
            for d, u in zip(
                items["dataset"].astype(str), items["item_uid"].astype(str), strict=True
            )
        ]
    out["split"] = split
    return out


def read_sources(
    sources: Mapping[str, SourceConfig],
    taxonomy: Taxonomy | None,
    *,
    search_split: str = "validation",
    progress: bool = True,
) -> SourcesResult:
    """Every source read by its adapter, mapped to ``taxonomy`` and placed by its role.

    ``taxonomy`` None keeps the sources' own categories (then they must share one set, e.g.
    DeepFashion2 alone). A missing root raises ``FileNotFoundError`` naming the source and
    its expected layout; a bad record is quarantined by its adapter, never fatal.
    """
    items, rejected, per_source = [], [], {}
    for name, spec in sources.items():
        opts = _adapter_options(spec, search_split, progress)
        try:
            tables = read_source(spec.source, spec.root, **opts)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"data.sources.{name}: {exc}") from exc
        part = tables.items
        if taxonomy is not None:
            part = map_to_taxonomy(part, taxonomy, source=tables.dataset)
        part = _place(_cap_per_class(part, spec.max_per_class), name, spec, search_split)
        log.info("source %s (%s, %s): %d items", name, spec.source, spec.role, len(part))
        per_source[name] = len(part)
        items.append(part)
        rejected.append(tables.quarantine)
    if not items:
        return SourcesResult(empty_items(), empty_quarantine(), per_source)
    table = pd.concat(items, ignore_index=True)
    dup = table["item_uid"].duplicated()
    if dup.any():
        raise ValueError(
            f"item {table.loc[dup, 'item_uid'].iloc[0]!r} is read by two sources: two sources "
            "read the same photos; give them disjoint `photos` ranges or folders"
        )
    return SourcesResult(table, pd.concat(rejected, ignore_index=True), per_source)
