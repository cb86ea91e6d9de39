"""Zalando (VITON) adapter on a tiny fixture: <split>_pairs.txt, <split>/image, <split>/cloth."""

from __future__ import annotations

from pathlib import Path

import pytest

from clothes_retrieval.data.schema import validate_item_table
from clothes_retrieval.data.sources import read_source


@pytest.fixture
def zalando(tmp_path: Path, photo) -> Path:
    root = tmp_path / "zalando"
    for pid in ("000001", "000002"):
        photo(root / "train" / "image" / f"{pid}_0.jpg")
        photo(root / "train" / "cloth" / f"{pid}_1.jpg")
    photo(root / "train" / "cloth" / "000003_1.jpg", corrupt=True)  # person 000003 missing
    (root / "train_pairs.txt").write_text(
        "000001_0.jpg 000001_1.jpg\n"
        "000002_0.jpg 000002_1.jpg\n"
        "000002_0.jpg 000002_1.jpg\n"  # repeated: one item each
        "000004_0.jpg 000004_1.jpg extra\n"  # 3 fields
        "000003_0.jpg 000003_1.jpg\n"
    )
    for pid in ("000010", "000011"):
        photo(root / "test" / "image" / f"{pid}_0.jpg")
        photo(root / "test" / "cloth" / f"{pid}_1.jpg")
    photo(root / "test" / "image" / "model.jpg")
    photo(root / "test" / "cloth" / "shirt.jpg")
    # unpaired try-on pairs, as the public test_pairs.txt: nobody wears the cloth of the line
    (root / "test_pairs.txt").write_text(
        "000010_0.jpg 000011_1.jpg\n000011_0.jpg 000010_1.jpg\nmodel.jpg shirt.jpg\n"
    )
    return root


def _by_name(items):
    names = items["image_path"].map(lambda p: "/".join(Path(p).parts[-3:]))
    return items.assign(name=names).set_index("name")


def test_match_by_name(zalando: Path) -> None:
    tables = read_source("zalando", zalando, progress=False)
    items = tables.items
    assert validate_item_table(items, tables.categories) == []
    by_name = _by_name(items)
    assert sorted(by_name.index) == [
        "test/cloth/000010_1.jpg",
        "test/cloth/000011_1.jpg",
        "test/image/000010_0.jpg",
        "test/image/000011_0.jpg",
        "train/cloth/000001_1.jpg",
        "train/cloth/000002_1.jpg",
        "train/image/000001_0.jpg",
        "train/image/000002_0.jpg",
    ]
    assert set(by_name.loc[by_name.index.str.contains("/image/"), "source"]) == {"user"}
    assert set(by_name.loc[by_name.index.str.contains("/cloth/"), "source"]) == {"shop"}
    pid = by_name["pair_id"]
    # a person is paired with its own product's cloth, not the line's
    assert pid["test/image/000010_0.jpg"] == pid["test/cloth/000010_1.jpg"]
    assert pid["test/image/000010_0.jpg"] != pid["test/cloth/000011_1.jpg"]
    assert pid["train/image/000002_0.jpg"] == pid["train/cloth/000002_1.jpg"]
    assert len(set(pid)) == 4 and min(pid) == 1  # products 1, 2, 10, 11 (3: quarantined)
    assert (items["style"] == 1).all() and (items["item_index"] == 1).all()
    assert sorted(items.loc[items["split"] == "test", "image_id"]) == [1, 2, 3, 4]


def test_defects_are_quarantined(zalando: Path) -> None:
    q = read_source("zalando", zalando, progress=False).quarantine
    got = sorted(zip(q["reason"], q["split"], q["path"].map(lambda p: Path(p).name), strict=True))
    assert got == [
        ("corrupt_image", "train", "000003_1.jpg"),
        ("malformed_annotation", "test", "test_pairs.txt"),  # model.jpg: no product number
        ("malformed_annotation", "train", "train_pairs.txt"),
        ("missing_image", "train", "000003_0.jpg"),
    ]
    msgs = " ".join(q["message"])
    assert "train_pairs.txt line 4" in msgs and "match='line'" in msgs


def test_match_by_line(zalando: Path) -> None:
    tables = read_source("zalando", zalando, splits=["test"], match="line", progress=False)
    pid = _by_name(tables.items)["pair_id"]
    assert pid["test/image/000010_0.jpg"] == pid["test/cloth/000011_1.jpg"]
    assert pid["test/image/model.jpg"] == pid["test/cloth/shirt.jpg"]
    assert len(tables.items) == 6 and tables.quarantine.empty


def test_missing_layout(zalando: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="_pairs.txt"):
        read_source("zalando", tmp_path / "nowhere")
    (zalando / "test_pairs.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test_pairs.txt"):
        read_source("zalando", zalando, progress=False)
    assert len(read_source("zalando", zalando, splits=["train"], progress=False).items) == 4
    with pytest.raises(ValueError, match="match"):
        read_source("zalando", zalando, splits=["train"], match="file", progress=False)
