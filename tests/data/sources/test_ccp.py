"""Clothing Co-Parsing adapter on a tiny fixture in the release's layout (photos/, label maps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import savemat

from clothes_retrieval.data.schema import validate_item_table
from clothes_retrieval.data.sources import read_source
from clothes_retrieval.data.sources.ccp import ccp_label_list, mask_polygons

LABELS = ["null", "dress", "hair", "shoes", "skin", "bag"]  # index = label value
NULL, DRESS, HAIR, SHOES, SKIN, BAG = range(6)
UNKNOWN = 9  # beyond the label list
WIDTH, HEIGHT = 40, 60
MIN_PIXELS = 20


def _write_labels(root: Path, names: list[str]) -> None:
    arr = np.empty((1, len(names)), dtype=object)
    arr[0, :] = names
    savemat(str(root / "label_list.mat"), {"label_list": arr})


def _write_map(path: Path, gt: np.ndarray, key: str = "groundtruth") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {key: gt.astype(np.uint8)})
    return path


def _person() -> np.ndarray:
    """Photo 1: hair, skin, a dress, shoes, and a bag below MIN_PIXELS."""
    gt = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    gt[0:10, 10:30] = HAIR  # 200 px, not a garment
    gt[10:20, 10:30] = SKIN  # 200 px, not a garment
    gt[20:45, 8:32] = DRESS  # 25 x 24 = 600 px -> box (8, 20, 32, 45)
    gt[50:55, 5:15] = SHOES  # 5 x 10 = 50 px -> box (5, 50, 15, 55)
    gt[30:33, 35:40] = BAG  # 3 x 5 = 15 px < MIN_PIXELS: labelling noise
    return gt


def _l_shape() -> np.ndarray:
    """Photo 2: an L-shaped dress and a region of a value beyond the label list."""
    gt = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    gt[5:15, 2:7] = DRESS
    gt[10:15, 2:21] = DRESS  # box (2, 5, 21, 15)
    gt[40:50, 0:10] = UNKNOWN  # 100 px
    return gt


@pytest.fixture
def ccp(tmp_path: Path, photo) -> Path:
    root = tmp_path / "ccp"
    photos, maps = root / "photos", root / "annotations" / "pixel-level"
    root.mkdir()
    _write_labels(root, LABELS)
    for image_id in (1, 2, 3, 6, 7, 8):
        photo(photos / f"{image_id:04d}.jpg", WIDTH, HEIGHT)
    photo(photos / "0005.jpg", corrupt=True)
    photo(photos / "cover.jpg", WIDTH, HEIGHT)  # not numbered: not a CCP photo
    _write_map(maps / "0001.mat", _person())
    _write_map(maps / "0002.mat", _l_shape())
    # 0003: photo without a label map
    _write_map(maps / "0004.mat", _person())  # label map without a photo
    _write_map(maps / "0005.mat", _person())  # its photo is corrupt
    _write_map(maps / "0006.mat", np.zeros((WIDTH, WIDTH)))  # 40 x 40 for a 40 x 60 photo
    _write_map(maps / "0007.mat", _person(), key="labels")  # no groundtruth key
    (maps / "0008.mat").write_bytes(b"this is not a MATLAB file " * 20)
    return root


def _read(root: Path, **options):
    options.setdefault("min_pixels", MIN_PIXELS)
    return read_source("ccp", root, progress=False, **options)


def test_label_list_round_trip(ccp: Path) -> None:
    assert ccp_label_list(ccp) == LABELS


def test_one_item_per_garment_label(ccp: Path) -> None:
    tables = _read(ccp)
    items = tables.items
    assert tables.dataset == "ccp"
    assert tables.categories == {DRESS: "dress", SHOES: "shoes", BAG: "bag"}
    assert validate_item_table(items, tables.categories) == []
    assert sorted(items["item_uid"]) == [
        "ccp/train/000001/1",
        "ccp/train/000001/2",
        "ccp/train/000002/1",
    ]
    assert set(items["category_name"]) == {"dress", "shoes"}  # no null/hair/skin, no tiny bag
    assert (items["source"] == "user").all()
    assert (items["pair_id"] == 0).all() and (items["style"] == 0).all()
    assert (items["split"] == "train").all()
    assert (items["image_width"] == WIDTH).all() and (items["image_height"] == HEIGHT).all()
    assert items["image_path"].str.endswith(("0001.jpg", "0002.jpg")).all()

    by_uid = items.set_index("item_uid")
    boxes = {uid: by_uid.loc[uid, ["x1", "y1", "x2", "y2"]].tolist() for uid in by_uid.index}
    # x2 / y2 one past the last pixel of the label
    assert boxes == {
        "ccp/train/000001/1": [8.0, 20.0, 32.0, 45.0],
        "ccp/train/000001/2": [5.0, 50.0, 15.0, 55.0],
        "ccp/train/000002/1": [2.0, 5.0, 21.0, 15.0],
    }
    assert by_uid.loc["ccp/train/000001/1", ["category_id", "category_name"]].tolist() == [
        DRESS,
        "dress",
    ]
    assert by_uid.loc["ccp/train/000001/2", "category_id"] == SHOES

    for uid, row in by_uid.iterrows():
        polys = row["segmentation"]
        assert polys and all(len(p) >= 6 and len(p) % 2 == 0 for p in polys), uid
        xs = [v for p in polys for v in p[0::2]]
        ys = [v for p in polys for v in p[1::2]]
        # contours run through the outermost pixels: the box's last pixel, not one past
        assert [min(xs), min(ys), max(xs) + 1, max(ys) + 1] == boxes[uid], uid


def test_defects_are_quarantined(ccp: Path) -> None:
    q = _read(ccp).quarantine
    got = sorted(
        zip(q["image_id"], q["reason"], q["path"].map(lambda p: Path(p).name), strict=True)
    )
    assert got == [
        (2, "unknown_category", "0002.mat"),
        (3, "missing_annotation", "0003.jpg"),
        (4, "missing_image", "0004.mat"),
        (5, "corrupt_image", "0005.jpg"),
        (6, "bad_value", "0006.mat"),
        (7, "missing_field", "0007.mat"),
        (8, "malformed_annotation", "0008.mat"),
    ]
    by_id = q.set_index("image_id")
    assert by_id.loc[2, "item_index"] == 2  # the dress is item 1
    assert pd.isna(by_id.loc[3, "item_index"])  # the whole photo is rejected
    assert "40x40" in by_id.loc[6, "message"] and "40x60" in by_id.loc[6, "message"]
    assert "labels" in by_id.loc[7, "message"]
    assert (q["dataset"] == "ccp").all() and (q["split"] == "train").all()


def test_image_ids_and_split(ccp: Path) -> None:
    tables = _read(ccp, image_ids=[1, 3, 99], split="query")
    items, q = tables.items, tables.quarantine
    assert sorted(items["item_uid"]) == ["ccp/query/000001/1", "ccp/query/000001/2"]
    assert set(items["split"]) == {"query"}
    assert q[["image_id", "reason", "split"]].values.tolist() == [
        [3, "missing_annotation", "query"]
    ]


def test_default_min_pixels_drops_small_regions(ccp: Path) -> None:
    # every region of the fixture is below the release's ~1,500 px of labelling noise
    tables = read_source("ccp", ccp, image_ids=[1, 2], progress=False)
    assert tables.items.empty and tables.quarantine.empty
    # at 51 px the 50-px shoes go, the 600-px dress stays
    kept = _read(ccp, image_ids=[1], min_pixels=51)
    assert kept.items["category_name"].tolist() == ["dress"]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"this is not a MATLAB file " * 20, id="text"),
        pytest.param(b"", id="empty"),  # a failed download
        pytest.param(b"\x00" * 500, id="zeros"),
    ],
)
def test_damaged_label_map_is_malformed_annotation(ccp: Path, payload: bytes) -> None:
    (ccp / "annotations" / "pixel-level" / "0001.mat").write_bytes(payload)
    tables = _read(ccp, image_ids=[1, 2])
    assert tables.quarantine[["image_id", "reason"]].values.tolist()[0] == [
        1,
        "malformed_annotation",
    ]
    assert set(tables.items["image_id"]) == {2}  # the read goes on


def test_missing_layout(ccp: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no dataset folder"):
        read_source("ccp", tmp_path / "nowhere")
    (ccp / "label_list.mat").unlink()
    with pytest.raises(FileNotFoundError, match="label_list.mat"):
        _read(ccp)
    empty = tmp_path / "empty"
    empty.mkdir()
    _write_labels(empty, LABELS)
    with pytest.raises(FileNotFoundError, match="photos"):
        _read(empty)


def test_mask_polygons_of_a_rectangle_and_two_blobs() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:15, 3:13] = True  # rows 5..14, columns 3..12
    (poly,) = mask_polygons(mask)
    xs, ys = poly[0::2], poly[1::2]
    assert (min(xs), min(ys), max(xs), max(ys)) == (3.0, 5.0, 12.0, 14.0)
    assert len(poly) == 8  # four corners

    mask[20:28, 20:38] = True  # a second, larger blob
    polys = mask_polygons(mask)
    assert len(polys) == 2
    assert min(polys[0][0::2]) == 20.0  # largest first
    assert len(mask_polygons(mask, max_polygons=1)) == 1
    assert mask_polygons(np.zeros((10, 10), dtype=bool)) == []
