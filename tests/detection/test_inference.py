"""Inference: the detection table's schema and the unreadable-image path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clothes_retrieval.detection.inference import (
    DETECTION_COLUMNS,
    FAILURE_COLUMNS,
    IMAGE_COLUMNS,
    run_detector,
)


@pytest.fixture
def atss_checkpoint(atss_one_epoch):
    return atss_one_epoch[0]


def _images(items: pd.DataFrame) -> pd.DataFrame:
    images = items[items["split"] == "validation"][list(IMAGE_COLUMNS)]
    return images.drop_duplicates("image_path").reset_index(drop=True)


def test_detection_table_schema(tiny_coco, atss_checkpoint, tmp_path: Path) -> None:
    images = _images(tiny_coco.items)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    bad_rows = images.iloc[:2].copy()
    bad_rows["image_path"] = [str(broken), str(tmp_path / "missing.jpg")]
    table = pd.concat([images, bad_rows], ignore_index=True)

    result = run_detector(
        atss_checkpoint.checkpoint,
        atss_checkpoint.config_path,
        table,
        score_thr=0.0,  # an undertrained model: keep every box to check the schema
        max_per_image=5,
        batch_size=4,
        device="cpu",
        progress=False,
        cpu_threads=1,
    )
    det = result.detections
    assert list(det.columns) == list(DETECTION_COLUMNS)
    assert {c: str(t) for c, t in det.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in DETECTION_COLUMNS.items()
    }
    assert len(det) > 0
    assert (det["detector"] == "atss").all()
    assert set(det["image_path"]) <= set(images["image_path"])
    assert det.groupby("image_path").size().max() <= 5
    assert det["score"].between(0.0, 1.0).all()
    assert det["category_id"].between(1, 13).all()
    assert (det["x1"] >= 0).all() and (det["y1"] >= 0).all()
    assert (det["x2"] <= det["image_width"]).all() and (det["y2"] <= det["image_height"]).all()
    assert (det["x2"] >= det["x1"]).all() and (det["y2"] >= det["y1"]).all()
    merged = det.merge(images, on="image_path", suffixes=("", "_img"))
    assert (merged["image_id"] == merged["image_id_img"]).all()
    assert (merged["source"] == merged["source_img"]).all()

    # The two unreadable images are recorded, not fatal.
    failures = result.failures
    assert list(failures.columns) == list(FAILURE_COLUMNS)
    assert sorted(failures["image_path"]) == sorted(bad_rows["image_path"])
    assert failures["error"].str.len().gt(0).all()


def test_score_threshold_filters(tiny_coco, atss_checkpoint) -> None:
    images = _images(tiny_coco.items).iloc[:3]
    result = run_detector(
        atss_checkpoint.checkpoint,
        atss_checkpoint.config_path,
        images,
        score_thr=1.0,
        batch_size=2,
        device="cpu",
        progress=False,
        cpu_threads=1,
    )
    assert (result.detections["score"] >= 1.0).all()
    assert list(result.detections.columns) == list(DETECTION_COLUMNS)
    assert result.failures.empty


def test_missing_columns_and_checkpoint(atss_checkpoint, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="image_width"):
        run_detector(
            atss_checkpoint.checkpoint,
            atss_checkpoint.config_path,
            pd.DataFrame({"image_path": []}),
        )
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        run_detector(
            tmp_path / "none.pth",
            atss_checkpoint.config_path,
            pd.DataFrame({c: [] for c in IMAGE_COLUMNS}),
        )
