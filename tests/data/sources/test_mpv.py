"""MPV adapter on a tiny fixture: all_poseA_poseB_clothes.txt and the photos in all/."""

from __future__ import annotations

from pathlib import Path

import pytest

from clothes_retrieval.data.schema import validate_item_table
from clothes_retrieval.data.sources import read_source

LINES = [
    "p1a.jpg p1b.jpg c1.jpg train",
    "p1a.jpg\tp1c.jpg\tc1.jpg\ttrain",  # p1a again (one item); tabs split too
    "p2a.jpg p2b.jpg c2.jpg test",
    "p3a.jpg p3b.jpg train",  # 3 fields
    "p4a.jpg p4b.jpg c4.jpg val",  # unknown split
    "p5a.jpg gone.jpg c5.jpg train",  # p5a corrupt, gone.jpg missing
    "",
]


@pytest.fixture
def mpv(tmp_path: Path, photo) -> Path:
    root = tmp_path / "mpv"
    for name in ("p1a", "p1b", "p1c", "c1", "p2a", "p2b", "c2", "c5"):
        photo(root / "all" / f"{name}.jpg")
    photo(root / "all" / "p5a.jpg", corrupt=True)
    (root / "all_poseA_poseB_clothes.txt").write_text("\n".join(LINES))
    return root


def test_person_and_cloth_items(mpv: Path) -> None:
    tables = read_source("mpv", mpv, progress=False)
    items = tables.items
    assert validate_item_table(items, tables.categories) == []
    assert tables.categories == {1: "top"}
    names = items["image_path"].map(lambda p: Path(p).stem)
    by_name = items.assign(name=names).set_index("name")
    assert sorted(by_name.index) == ["c1", "c2", "c5", "p1a", "p1b", "p1c", "p2a", "p2b"]
    assert set(by_name.loc[["p1a", "p1b", "p1c", "p2a"], "source"]) == {"user"}
    assert set(by_name.loc[["c1", "c2", "c5"], "source"]) == {"shop"}
    # dense ids over the cloths of the 4-field lines, sorted: c1, c2, c4, c5
    assert by_name["pair_id"].to_dict() == {
        "p1a": 1,
        "p1b": 1,
        "p1c": 1,
        "c1": 1,
        "p2a": 2,
        "p2b": 2,
        "c2": 2,
        "c5": 4,
    }
    assert by_name.loc["p2a", "split"] == "test" and by_name.loc["c1", "split"] == "train"
    assert (items["item_index"] == 1).all() and (items["style"] == 1).all()
    assert items[["x2", "y2"]].drop_duplicates().values.tolist() == [[32.0, 48.0]]
    assert sorted(items.loc[items["split"] == "test", "image_id"]) == [1, 2, 3]


def test_defects_are_quarantined(mpv: Path) -> None:
    q = read_source("mpv", mpv, progress=False).quarantine
    assert sorted(zip(q["reason"], q["path"].map(lambda p: Path(p).name), strict=True)) == [
        ("bad_value", "all_poseA_poseB_clothes.txt"),
        ("corrupt_image", "p5a.jpg"),
        ("malformed_annotation", "all_poseA_poseB_clothes.txt"),
        ("missing_image", "gone.jpg"),
    ]
    msg = q.set_index("reason")["message"]
    assert "line 4" in msg["malformed_annotation"] and "'val'" in msg["bad_value"]
    assert "line 6" in msg["missing_image"]


def test_split_selection_and_missing_layout(mpv: Path, tmp_path: Path) -> None:
    items = read_source("mpv", mpv, splits=["test"], progress=False).items
    assert len(items) == 3 and set(items["pair_id"]) == {2}
    with pytest.raises(FileNotFoundError, match="all_poseA_poseB_clothes.txt"):
        read_source("mpv", tmp_path / "nowhere")
    (mpv / "all_poseA_poseB_clothes.txt").unlink()
    with pytest.raises(FileNotFoundError, match="person A"):
        read_source("mpv", mpv, progress=False)
