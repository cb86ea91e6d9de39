from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from clothes_retrieval.data import ReaderConfig, export_coco, read_deepfashion2
from clothes_retrieval.data.coco import polygon_area
from clothes_retrieval.data.schema import CATEGORIES


def items_of(builder):
    splits = tuple(sorted(p.name for p in builder.root.iterdir()))
    return read_deepfashion2(builder.root, ReaderConfig(splits=splits), progress=False).items


def load_coco(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_round_trip_through_pycocotools(good_df2, tmp_path):
    items = items_of(good_df2)
    summary = export_coco(items, "validation", tmp_path / "val.json")
    val = items[items["split"] == "validation"].sort_values(["image_id", "item_index"])

    coco = load_coco(summary.path)
    assert (summary.images, summary.annotations) == (4, 6)
    assert sorted(coco.getImgIds()) == sorted(val["image_id"].unique().tolist())
    assert len(coco.getAnnIds()) == len(val) == 6
    assert [c["id"] for c in coco.loadCats(coco.getCatIds())] == list(CATEGORIES)
    assert all(c["supercategory"] == "clothes" for c in coco.dataset["categories"])

    anns = {a["item_uid"]: a for a in coco.loadAnns(coco.getAnnIds())}
    assert sorted(a["id"] for a in anns.values()) == list(range(1, 7))
    for row in val.itertuples():
        ann = anns[row.item_uid]
        img = coco.loadImgs(ann["image_id"])[0]
        assert ann["image_id"] == row.image_id and ann["category_id"] == row.category_id
        assert ann["bbox"] == [row.x1, row.y1, row.x2 - row.x1, row.y2 - row.y1]
        assert (ann["style"], ann["pair_id"], ann["iscrowd"]) == (row.style, row.pair_id, 0)
        assert ann["area"] == pytest.approx(polygon_area(row.segmentation[0]))
        assert (img["file_name"], img["width"], img["height"]) == (
            row.image_path,
            row.image_width,
            row.image_height,
        )
        assert (img["source"], img["pair_id"]) == (row.source, row.pair_id)
        mask = coco.annToMask(ann)
        assert mask.shape == (row.image_height, row.image_width)
        ys, xs = np.nonzero(mask)
        assert len(xs) > 0
        assert xs.min() >= row.x1 - 1 and xs.max() <= row.x2 and ys.min() >= row.y1 - 1
        assert ys.max() <= row.y2


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ground_truth_scored_against_itself_gives_ap_1(good_df2, tmp_path, iou_type):
    items = items_of(good_df2)
    gt = load_coco(export_coco(items, "validation", tmp_path / "val.json").path)
    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "segmentation": a["segmentation"],
            "score": 1.0,
        }
        for a in gt.loadAnns(gt.getAnnIds())
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_degenerate_polygons_fall_back_to_the_box(df2, item_factory, tmp_path):
    df2.record(
        "validation",
        1,
        "user",
        1,
        [
            item_factory(box=(10, 10, 40, 30), segmentation=[[10, 10, 20, 20]]),  # 2 points
            item_factory(box=(5, 5, 30, 50), segmentation=[[5, 5, 10, 10, 15, 15]]),  # collinear
            item_factory(box=(50, 5, 70, 50)),
        ],
    )
    items = items_of(df2)
    summary = export_coco(items, "validation", tmp_path / "val.json")
    assert (summary.box_polygon_items, summary.dropped_polygons) == (2, 2)
    coco = load_coco(summary.path)
    ann = coco.loadAnns(coco.getAnnIds())[0]
    assert ann["segmentation"] == [[10.0, 10.0, 40.0, 10.0, 40.0, 30.0, 10.0, 30.0]]
    assert ann["area"] == 600.0
    assert coco.annToMask(ann).sum() > 0


def test_quarantined_images_and_other_sources_are_omitted(good_df2, item_factory, tmp_path):
    good_df2.record("validation", 10, "shop", 9, [item_factory(category_id=14)])
    items = items_of(good_df2)
    assert 10 not in set(items["image_id"])

    shop = export_coco(items, "validation", tmp_path / "shop.json", sources=("shop",))
    data = json.loads(shop.path.read_text())
    assert [img["id"] for img in data["images"]] == [2, 4]
    assert {img["source"] for img in data["images"]} == {"shop"}
    assert len(data["annotations"]) == 3
    with pytest.raises(ValueError, match="sources"):
        export_coco(items, "validation", tmp_path / "x.json", sources=("street",))


def test_unknown_split_writes_an_empty_file(good_df2, tmp_path):
    summary = export_coco(items_of(good_df2), "test", tmp_path / "test.json")
    assert (summary.images, summary.annotations) == (0, 0)
    assert len(load_coco(summary.path).getCatIds()) == 13
