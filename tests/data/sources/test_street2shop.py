"""Street2Shop adapter on a tiny fixture in the release's layout (meta/json + photos/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clothes_retrieval.data.schema import validate_item_table
from clothes_retrieval.data.sources import read_source

CATEGORIES = ("dresses", "skirts")


def _box(left: float, top: float, width: float, height: float) -> dict[str, float]:
    return {"left": left, "top": top, "width": width, "height": height}


@pytest.fixture
def s2s(tmp_path: Path, photo) -> Path:
    root = tmp_path / "street2shop"
    meta = root / "meta" / "json"
    meta.mkdir(parents=True)
    photos = root / "photos"
    for pid in (1, 2, 5, 6, 7, 11, 13, 14):
        photo(photos / f"{pid}.jpg")  # 32 x 48
    photo(photos / "000000012.jpeg")  # zero-padded name, other suffix: photo 12
    photo(photos / "4.jpg", corrupt=True)

    def write(name: str, content) -> None:
        text = content if isinstance(content, str) else json.dumps(content)
        (meta / name).write_text(text)

    write(
        "train_pairs_dresses.json",
        [
            {"photo": 1, "product": 100, "bbox": _box(2, 3, 20, 30)},
            {"photo": 1, "product": 100, "bbox": _box(2, 3, 20, 30)},  # repeated: skipped
            {"photo": 3, "product": 100, "bbox": _box(0, 0, 10, 10)},  # no photo file
            {"photo": 5, "product": 102, "bbox": _box(10, 0, 100, 10)},  # box outside
            {"photo": 7, "product": 103, "bbox": _box(-0.5, 1, 32.5, 40)},  # within tolerance
            "oops",  # not an object
            {"photo": 6, "product": 104},  # no bbox
        ],
    )
    write(
        "train_pairs_skirts.json",
        [
            {"photo": 1, "product": 101, "bbox": _box(4, 20, 10, 20)},  # 2nd item of photo 1
            {"photo": 4, "product": 101, "bbox": _box(0, 0, 10, 10)},  # corrupt photo
        ],
    )
    write(
        "test_pairs_dresses.json",
        [
            {"photo": 2, "product": 200, "bbox": _box(0, 0, 32, 48)},
            {"photo": 6, "product": 100, "bbox": _box(1, 1, 5, 5)},  # product 100 in test too
        ],
    )
    write("test_pairs_skirts.json", "[{")  # unparsable
    write(
        "retrieval_dresses.json",
        [
            {"photo": 11, "product": 100},
            {"photo": 12, "product": 200},
            {"photo": 13, "product": 999},  # no street photo: a gallery distractor
            {"product": 100},  # no photo id
        ],
    )
    write("retrieval_skirts.json", [{"photo": 14, "product": 101}])
    write("retrieval_socks.json", [{"photo": 15, "product": 5}])  # not a category
    return root


def test_street_and_shop_items(s2s: Path) -> None:
    tables = read_source("street2shop", s2s, categories=CATEGORIES, progress=False)
    items = tables.items
    assert validate_item_table(items, tables.categories) == []
    assert tables.categories[3] == "dresses" and len(tables.categories) == 11

    train, test = items[items["split"] == "train"], items[items["split"] == "test"]
    # street: photo 1 (two products), photo 7; shop: 11 (product 100), 14 (product 101)
    assert sorted(train["image_id"]) == [1, 1, 7, 11, 14]
    # street: photo 2, photo 6; shop: 11 again (product 100 has test pairs too), 12
    assert sorted(test["image_id"]) == [2, 6, 11, 12]
    assert items["item_uid"].is_unique
    assert 13 not in set(items["image_id"])  # unpaired shop photo left out by default

    first = train[train["image_id"] == 1].set_index("item_index")
    assert (first["source"] == "user").all()
    assert first.loc[1, ["pair_id", "category_name"]].tolist() == [100, "dresses"]
    assert first.loc[2, ["pair_id", "category_name"]].tolist() == [101, "skirts"]
    # left/top/width/height -> x1, y1, x2 = left + width, y2 = top + height
    assert first.loc[1, ["x1", "y1", "x2", "y2"]].tolist() == [2.0, 3.0, 22.0, 33.0]
    assert first.loc[2, ["x1", "y1", "x2", "y2"]].tolist() == [4.0, 20.0, 14.0, 40.0]

    shop = train[train["image_id"] == 11].iloc[0]
    assert shop["source"] == "shop" and shop["pair_id"] == 100 and shop["style"] == 1
    assert [shop["x1"], shop["y1"], shop["x2"], shop["y2"]] == [0.0, 0.0, 32.0, 48.0]
    assert (items["style"] == 1).all()
    padded = test[test["image_id"] == 12].iloc[0]
    assert padded["image_path"].endswith("000000012.jpeg") and padded["pair_id"] == 200

    clipped = train[train["image_id"] == 7].iloc[0]  # 0.5 px outside: clipped
    assert [clipped["x1"], clipped["x2"]] == [0.0, 32.0]


def test_defects_are_quarantined(s2s: Path) -> None:
    q = read_source("street2shop", s2s, categories=CATEGORIES, progress=False).quarantine
    got = sorted(zip(q["reason"], q["path"].map(lambda p: Path(p).name), strict=True))
    assert got == [
        ("bad_box", "5.jpg"),
        ("corrupt_image", "4.jpg"),
        ("malformed_json", "test_pairs_skirts.json"),
        ("malformed_json", "train_pairs_dresses.json"),
        ("missing_field", "retrieval_dresses.json"),
        ("missing_field", "train_pairs_dresses.json"),
        ("missing_image", "3.jpg"),
        ("unknown_category", "retrieval_socks.json"),
    ]
    missing = q[q["reason"] == "missing_image"].iloc[0]
    assert missing["split"] == "train" and missing["image_id"] == 3
    assert "train_pairs_dresses.json record 2" in missing["message"]
    assert "download" in missing["message"]
    bad_box = q[q["reason"] == "bad_box"].iloc[0]
    assert bad_box["image_id"] == 5 and bad_box["item_index"] == 1


def test_options(s2s: Path) -> None:
    tables = read_source(
        "street2shop",
        s2s,
        categories=("dresses",),
        splits=("train",),
        unpaired_split="train",
        progress=False,
    )
    items = tables.items
    assert set(items["split"]) == {"train"} and set(items["category_name"]) == {"dresses"}
    assert 13 in set(items.loc[items["source"] == "shop", "image_id"])  # distractor kept
    assert 12 in set(items["image_id"])  # product 200's shop photo: no train pair -> unpaired


def test_missing_layout(s2s: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="meta/json"):
        read_source("street2shop", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train_pairs_bags.json"):
        read_source("street2shop", s2s, progress=False)  # all 11 categories by default
    with pytest.raises(ValueError, match="socks"):
        read_source("street2shop", s2s, categories=("socks",), progress=False)
