"""DARN adapter on a tiny fixture: a TAB-separated pairs.txt and the photos it names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clothes_retrieval.data.schema import validate_item_table
from clothes_retrieval.data.sources import read_source

LINES = [
    "# street\tshop\tcategory\tsplit",
    "images/street/1.jpg\timages/shop/a.jpg\tdress",  # split defaults to train
    "images/street/2.jpg\timages/shop/a.jpg\tdress\ttrain",  # shop photo a again: one item
    "",
    "images/street/3.jpg\timages/shop/b.jpg\tdown coat\ttest",
    "images/street/4.jpg\timages/shop/c.jpg\tponcho",  # unknown category
    "images/street/5.jpg images/shop/d.jpg dress",  # spaces, not TABs
    "images/street/6.jpg\timages/shop/e.jpg\tskirt",  # street photo missing
    "images/street/7.jpg\timages/shop/e.jpg\tskirt",  # street photo corrupt
    "images/street/8.jpg\timages/shop/f.jpg\tdress\tval",  # unknown split
]


@pytest.fixture
def darn(tmp_path: Path, photo) -> Path:
    root = tmp_path / "darn"
    for name in ("street/1", "street/2", "street/3", "street/4", "shop/a", "shop/b", "shop/e"):
        photo(root / "images" / f"{name}.jpg")
    photo(root / "images" / "street" / "7.jpg", corrupt=True)
    (root / "pairs.txt").write_text("\n".join(LINES) + "\n")
    return root


def test_items_and_pairs(darn: Path) -> None:
    tables = read_source("darn", darn, progress=False)
    items = tables.items
    assert validate_item_table(items, tables.categories) == []
    assert len(tables.categories) == 20
    name = items["image_path"].map(lambda p: "/".join(Path(p).parts[-2:]))
    by_name = items.assign(name=name).set_index("name")
    assert sorted(by_name.index) == [
        "shop/a.jpg",
        "shop/b.jpg",
        "shop/e.jpg",
        "street/1.jpg",
        "street/2.jpg",
        "street/3.jpg",
    ]
    assert by_name.loc["street/1.jpg", "source"] == "user"
    assert by_name.loc["shop/a.jpg", "source"] == "shop"
    # pair ids: dense over the sorted shop photos of well-formed lines (a, b, c, e, f)
    assert by_name["pair_id"].to_dict() == {
        "shop/a.jpg": 1,
        "shop/b.jpg": 2,
        "shop/e.jpg": 4,
        "street/1.jpg": 1,
        "street/2.jpg": 1,
        "street/3.jpg": 2,
    }
    assert by_name.loc["street/3.jpg", ["split", "category_name"]].tolist() == ["test", "down coat"]
    assert (items["style"] == 1).all() and (items["item_index"] == 1).all()
    whole = items[["x1", "y1", "x2", "y2"]].to_numpy().tolist()
    assert whole == [[0.0, 0.0, 32.0, 48.0]] * len(items)
    # image ids 1.. over the sorted paths of each split
    train = items[items["split"] == "train"].sort_values("image_path")
    assert train["image_id"].tolist() == [1, 2, 3, 4]
    assert train["image_path"].map(lambda p: Path(p).name).tolist() == [
        "a.jpg",
        "e.jpg",
        "1.jpg",
        "2.jpg",
    ]


def test_defects_are_quarantined(darn: Path) -> None:
    q = read_source("darn", darn, progress=False).quarantine
    assert sorted(q["reason"]) == [
        "bad_value",
        "corrupt_image",
        "malformed_annotation",
        "missing_image",
        "unknown_category",
    ]
    msg = q.set_index("reason")["message"]
    assert (
        "pairs.txt line 7" in msg["malformed_annotation"] and "TAB" in msg["malformed_annotation"]
    )
    assert "poncho" in msg["unknown_category"] and "line 6" in msg["unknown_category"]
    assert "'val'" in msg["bad_value"]
    assert "street/6.jpg" in q.set_index("reason").loc["missing_image", "path"]
    corrupt = q[q["reason"] == "corrupt_image"].iloc[0]
    assert corrupt["path"].endswith("7.jpg") and pd.isna(corrupt["item_index"])


def test_split_selection_keeps_pair_ids(darn: Path) -> None:
    items = read_source("darn", darn, splits=("test",), progress=False).items
    assert set(items["split"]) == {"test"} and len(items) == 2
    assert set(items["pair_id"]) == {2}


def test_missing_layout(darn: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pairs.txt"):
        read_source("darn", tmp_path / "nowhere")
    (darn / "pairs.txt").unlink()
    with pytest.raises(FileNotFoundError, match="TAB-separated"):
        read_source("darn", darn, progress=False)
