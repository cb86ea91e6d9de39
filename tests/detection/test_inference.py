"""Inference: the detection table's schema, the score threshold, unreadable images and
checkpoints, and CUDA against CPU."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clothes_retrieval.detection.inference import (
    DETECTION_COLUMNS,
    FAILURE_COLUMNS,
    IMAGE_COLUMNS,
    run_detector,
)
from clothes_retrieval.detection.train import CheckpointError


@pytest.fixture
def atss_checkpoint(atss_one_epoch):
    return atss_one_epoch[0]


def _images(items: pd.DataFrame, split: str = "validation") -> pd.DataFrame:
    images = items[items["split"] == split][list(IMAGE_COLUMNS)]
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


def _detect(checkpoint, images: pd.DataFrame, **kwargs) -> pd.DataFrame:
    result = run_detector(
        checkpoint.checkpoint,
        checkpoint.config_path,
        images,
        batch_size=2,
        progress=False,
        cpu_threads=1,
        **kwargs,
    )
    assert list(result.detections.columns) == list(DETECTION_COLUMNS)
    assert result.failures.empty
    return result.detections


def _boxes(det: pd.DataFrame) -> set[tuple]:
    return set(
        det[["image_path", "x1", "y1", "x2", "y2", "score", "category_id"]].itertuples(
            index=False, name=None
        )
    )


def test_score_threshold_filters(tiny_coco, atss_checkpoint) -> None:
    """Exactly the boxes with score >= score_thr are kept (run_detector's documented rule),
    the box whose score equals the threshold included."""
    images = _images(tiny_coco.items).iloc[:3]
    every = _detect(atss_checkpoint, images, score_thr=0.0, device="cpu")
    scores = np.sort(every["score"].unique())
    assert len(scores) > 10
    thr = float(scores[len(scores) // 2])  # an observed score: the boundary case is tested

    kept = _detect(atss_checkpoint, images, score_thr=thr, device="cpu")
    expected = every[every["score"] >= thr]
    assert 0 < len(expected) < len(every)  # some kept, some dropped
    assert (kept["score"] == thr).any()
    assert len(kept) == len(expected)
    assert _boxes(kept) == _boxes(expected)


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


def test_truncated_checkpoint_is_refused(tiny_coco, atss_checkpoint, tmp_path: Path) -> None:
    data = atss_checkpoint.checkpoint.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])  # an interrupted copy
    with pytest.raises(CheckpointError, match=re.escape(str(truncated))) as info:
        run_detector(
            truncated,
            atss_checkpoint.config_path,
            _images(tiny_coco.items).iloc[:1],
            device="cpu",
            progress=False,
        )
    assert "truncated" in str(info.value) and "train it again" in str(info.value)


@pytest.mark.gpu  # skipped without CUDA (tests/conftest.py), before its fixture trains
def test_cuda_agrees_with_cpu(tiny_coco, atss_overfit) -> None:
    """The trained tiny detector finds the same confident boxes on CUDA as on the CPU (to
    within float32 / TF32 differences)."""
    trained, _ = atss_overfit
    images = _images(tiny_coco.items, "train")  # the images it learnt: confident boxes
    thr, margin = 0.2, 0.02  # confident boxes; boxes within ``margin`` of thr may flip
    cpu = _detect(trained, images, score_thr=thr - margin, device="cpu")
    cuda = _detect(trained, images, score_thr=thr - margin, device="cuda")
    assert (cpu["score"] >= thr).sum() > 0, "no confident box: nothing to compare"

    def matched(box: pd.Series, others: pd.DataFrame) -> bool:
        same = others[
            (others["image_path"] == box["image_path"])
            & (others["category_id"] == box["category_id"])
        ]
        coords = same[["x1", "y1", "x2", "y2"]].to_numpy()
        close = (np.abs(coords - box[["x1", "y1", "x2", "y2"]].to_numpy(float)) <= 1.0).all(1)
        return bool((close & (np.abs(same["score"].to_numpy() - box["score"]) <= 0.01)).any())

    for a, b in ((cpu, cuda), (cuda, cpu)):
        for _, box in a[a["score"] >= thr].iterrows():
            assert matched(box, b), f"{box.to_dict()} has no counterpart on the other device"
