"""MVC adapter on a tiny fixture: mvc_info.json and the view photos under images/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clothes_retrieval.data.schema import validate_item_table
from clothes_retrieval.data.sources import read_source

RECORDS = [
    {"itemN": 1, "filename": "1_front.jpg", "category": "Dresses", "viewId": 1},
    {"itemN": 1, "filename": "1_back.jpg", "category": "Dresses", "viewId": 2},
    {"itemN": 2, "filename": "2_front.jpg", "category": "Jeans", "productTypeName": "jeans"},
    {"itemN": 2, "filename": "2_front.jpg", "category": "Jeans"},  # repeated: skipped
    {"itemN": 3, "filename": "3_front.jpg", "category": "Hats"},  # unknown category
    "garbage",  # not an object
    {"itemN": 4, "category": "Skirts"},  # no filename
    {"itemN": 5, "filename": "5_front.jpg", "category": "Skirts"},  # photo missing
    {"itemN": 6, "filename": "6_front.jpg", "category": "Skirts"},  # photo corrupt
    {"itemN": 7, "filename": "1_front.jpg", "category": "Dresses"},  # photo of item 1 again
]


@pytest.fixture
def mvc(tmp_path: Path, photo) -> Path:
    root = tmp_path / "mvc"
    for name in ("1_front", "1_back", "2_front", "3_front"):
        photo(root / "images" / f"{name}.jpg", 40, 60)
    photo(root / "images" / "6_front.jpg", corrupt=True)
    (root / "mvc_info.json").write_text(json.dumps(RECORDS))
    return root


def test_views_are_shop_items_of_one_product(mvc: Path) -> None:
    tables = read_source("mvc", mvc, progress=False)
    items = tables.items
    assert validate_item_table(items, tables.categories) == []
    assert len(items) == 3 and (items["source"] == "shop").all()
    assert set(items["split"]) == {"train"}
    names = items["image_path"].map(lambda p: Path(p).name)
    by_name = items.assign(name=names).set_index("name")
    assert by_name.loc["1_front.jpg", "pair_id"] == by_name.loc["1_back.jpg", "pair_id"] == 1
    assert by_name.loc["2_front.jpg", ["pair_id", "category_name"]].tolist() == [2, "Jeans"]
    assert by_name.loc["1_back.jpg", ["x2", "y2"]].tolist() == [40.0, 60.0]
    assert (items["style"] == 1).all()
    # image ids 1.. over the sorted file names
    assert by_name["image_id"].to_dict() == {"1_back.jpg": 1, "1_front.jpg": 2, "2_front.jpg": 3}


def test_defects_are_quarantined(mvc: Path) -> None:
    q = read_source("mvc", mvc, progress=False).quarantine
    assert sorted(q["reason"]) == [
        "bad_value",
        "corrupt_image",
        "malformed_json",
        "missing_field",
        "missing_image",
        "unknown_category",
    ]
    msg = q.set_index("reason")["message"]
    assert "'Hats'" in msg["unknown_category"] and "record 4" in msg["unknown_category"]
    assert "record 9" in msg["bad_value"] and "itemN 1" in msg["bad_value"]
    assert q.set_index("reason").loc["missing_image", "path"].endswith("5_front.jpg")


def test_test_items_and_splits(mvc: Path) -> None:
    items = read_source("mvc", mvc, test_items=[2], progress=False).items
    assert items.groupby("split")["pair_id"].apply(set).to_dict() == {"train": {1}, "test": {2}}
    only_test = read_source("mvc", mvc, test_items=[2], splits=["test"], progress=False)
    assert len(only_test.items) == 1
    assert not only_test.quarantine["message"].str.contains("Hats").any()  # a train record


def test_missing_or_unreadable_layout(mvc: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mvc_info.json"):
        read_source("mvc", tmp_path / "nowhere")
    (mvc / "mvc_info.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot parse"):
        read_source("mvc", mvc, progress=False)
    (mvc / "mvc_info.json").unlink()
    with pytest.raises(FileNotFoundError, match="itemN"):
        read_source("mvc", mvc, progress=False)
