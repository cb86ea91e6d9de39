"""Product-folder adapter on a tiny fixture in its layout (<split>/<class>/*.jpg)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clothes_retrieval.data.schema import validate_item_table
from clothes_retrieval.data.sources import read_source


@pytest.fixture
def products(tmp_path: Path, photo) -> Path:
    root = tmp_path / "clothing-dataset-small"
    photo(root / "train" / "skirt" / "b.jpg", 20, 30)
    photo(root / "train" / "skirt" / "a.jpg", 24, 36)
    photo(root / "train" / "dress" / "z.jpg", 32, 48)
    photo(root / "train" / "dress" / "broken.jpg", corrupt=True)
    photo(root / "train" / "hat" / "h.png", 16, 16)
    (root / "train" / "hat" / "notes.txt").write_text("not a photo")
    (root / "train" / "labels.csv").write_text("a file beside the class folders")
    photo(root / "validation" / "dress" / "v.jpg", 40, 30)
    photo(root / "validation" / "shorts" / "s.jpg", 30, 40)
    return root


def _read(root: Path, **options):
    return read_source("product_folders", root, progress=False, **options)


def test_one_shop_item_per_photo(products: Path) -> None:
    tables = _read(products)
    items = tables.items
    assert tables.dataset == "products"
    # sorted class folder names over both splits
    assert tables.categories == {1: "dress", 2: "hat", 3: "shorts", 4: "skirt"}
    assert validate_item_table(items, tables.categories) == []
    assert (items["source"] == "shop").all()
    assert (items["pair_id"] == 0).all() and (items["style"] == 0).all()
    assert (items["item_index"] == 1).all()

    # ids 1..n per split over <class>/<name> in sorted order (the corrupt photo keeps its id)
    got = [
        (row.split, row.image_id, Path(row.image_path).name, row.category_name, row.category_id)
        for row in items.itertuples()
    ]
    assert sorted(got) == [
        ("train", 2, "z.jpg", "dress", 1),
        ("train", 3, "h.png", "hat", 2),
        ("train", 4, "a.jpg", "skirt", 4),
        ("train", 5, "b.jpg", "skirt", 4),
        ("validation", 1, "v.jpg", "dress", 1),
        ("validation", 2, "s.jpg", "shorts", 3),
    ]
    assert "products/validation/000002/1" in set(items["item_uid"])

    # the whole photo is the box
    sizes = {"z.jpg": (32, 48), "h.png": (16, 16), "a.jpg": (24, 36), "b.jpg": (20, 30),
             "v.jpg": (40, 30), "s.jpg": (30, 40)}  # fmt: skip
    for row in items.itertuples():
        w, h = sizes[Path(row.image_path).name]
        assert (row.image_width, row.image_height) == (w, h)
        assert (row.x1, row.y1, row.x2, row.y2) == (0.0, 0.0, float(w), float(h))


def test_corrupt_photo_is_quarantined(products: Path) -> None:
    tables = _read(products)
    q = tables.quarantine
    assert q[["split", "image_id", "reason"]].values.tolist() == [["train", 1, "corrupt_image"]]
    assert Path(q["path"].iloc[0]).name == "broken.jpg" and q["item_index"].isna().all()
    assert len(tables.items) == 6  # the read went on


def test_classes_fix_the_ids(products: Path) -> None:
    classes = ("skirt", "shorts", "dress", "hat", "pants")  # pants: no folder, still a class
    tables = _read(products, classes=classes)
    assert tables.categories == {1: "skirt", 2: "shorts", 3: "dress", 4: "hat", 5: "pants"}
    ids = dict(zip(tables.items["category_name"], tables.items["category_id"], strict=True))
    assert ids == {"skirt": 1, "shorts": 2, "dress": 3, "hat": 4}


def test_class_outside_classes_is_unknown_category(products: Path) -> None:
    tables = _read(products, classes=("dress", "skirt"))
    q = tables.quarantine
    unknown = q[q["reason"] == "unknown_category"]
    assert sorted(Path(p).name for p in unknown["path"]) == ["h.png", "s.jpg"]
    assert set(tables.items["category_name"]) == {"dress", "skirt"}


def test_dataset_and_splits_options(products: Path) -> None:
    tables = _read(products, splits=("validation",), dataset="shop_photos")
    items = tables.items
    assert tables.dataset == "shop_photos" and (items["dataset"] == "shop_photos").all()
    assert sorted(items["item_uid"]) == [
        "shop_photos/validation/000001/1",
        "shop_photos/validation/000002/1",
    ]
    assert tables.categories == {1: "dress", 2: "shorts"}  # only the splits read


def test_missing_layout(products: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no dataset folder"):
        _read(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="'test'"):
        _read(products, splits=("train", "test"))
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no class folders"):
        _read(empty, splits=("train",), dataset="mine")
