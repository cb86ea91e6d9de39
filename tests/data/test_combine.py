"""A profile's sources read into one item table, each placed by its role."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clothes_retrieval.data.sources import SourceConfig, read_sources
from clothes_retrieval.data.taxonomy import load_taxonomy


def _products(root: Path, classes=("dress", "hat"), per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (20, 16, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.jpg")
    return root


def test_roles_place_items_in_the_pipeline_splits(tmp_path: Path) -> None:
    root = _products(tmp_path / "products")
    taxonomy = load_taxonomy("product10")
    result = read_sources(
        {
            "catalogue": SourceConfig(source="product_folders", root=root, role="splits"),
            "more": SourceConfig(
                source="product_folders",
                root=root,
                role="training",
                splits=("validation",),
            ),
        },
        taxonomy,
        search_split="validation",
        progress=False,
    )
    items = result.items
    assert result.per_source == {"catalogue": 12, "more": 6}
    moved = items["item_uid"].str.startswith("products/train:validation/")
    cat, more = items[~moved], items[moved]
    assert sorted(cat["split"].unique()) == ["train", "validation"]
    # a training source's items all go to train, their uids keep where they came from
    assert len(more) == 6 and set(more["split"]) == {"train"}
    assert set(items["category_name"]) == {"dress", "hat"}
    assert items["item_uid"].is_unique


def test_limits_per_class_and_a_wrong_role_is_named(tmp_path: Path) -> None:
    root = _products(tmp_path / "products")
    taxonomy = load_taxonomy("product10")
    capped = read_sources(
        {"p": SourceConfig(source="product_folders", root=root, max_per_class=1)},
        taxonomy,
        progress=False,
    )
    assert capped.items.groupby(["split", "category_name"]).size().eq(1).all()
    # product photos are shop photos: they cannot be queries
    with pytest.raises(ValueError, match="role 'queries' takes user photos"):
        read_sources(
            {"p": SourceConfig(source="product_folders", root=root, role="queries")},
            taxonomy,
            progress=False,
        )
    with pytest.raises(FileNotFoundError, match="data.sources.gone"):
        read_sources(
            {"gone": SourceConfig(source="product_folders", root=tmp_path / "nope")},
            taxonomy,
            progress=False,
        )
