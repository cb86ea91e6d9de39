"""Tiny training runs: each detector family, resumption, the files beside the checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from clothes_retrieval.detection.train import train_detector

# One epoch of the sample profile on ~15 images is two iterations (batch 8).
FAMILIES = ["atss", "retinanet_r101", "centernet", "cascade_mask_rcnn"]


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_trains(name: str, train_tiny, atss_one_epoch, tmp_path: Path) -> None:
    if name == "atss":
        result, tracker = atss_one_epoch
    else:
        result, tracker = train_tiny(name, tmp_path / name, max_epochs=1)
    assert result.epochs == 1 and result.resumed_from_epoch is None
    assert result.checkpoint == result.work_dir / "latest.pth" and result.checkpoint.is_file()
    assert result.device == "cpu"
    state = torch.load(result.work_dir / "epoch_1.pth", map_location="cpu", weights_only=False)
    assert state["meta"]["epoch"] == 1

    # The resolved mmdet config and our own config lie beside the checkpoint.
    from mmengine.config import Config

    cfg = Config.fromfile(str(result.config_path))
    assert cfg.clothes_retrieval.detector == name
    record = json.loads(result.detector_config_path.read_text())
    assert record["detector"]["name"] == name and record["profile"] == "sample"

    # Losses reached the tracker, finite; the validation CocoMetric too.
    losses = [h["train/loss"] for h in tracker.history if "train/loss" in h]
    assert losses and all(math.isfinite(v) for v in losses)
    val = [h for h in tracker.history if "val/coco/bbox_mAP" in h]
    assert val and 0.0 <= val[-1]["val/coco/bbox_mAP_50"] <= 1.0
    assert set(result.metrics) >= {"coco/bbox_mAP", "coco/bbox_mAP_50", "coco/bbox_mAP_75"}


def test_resume_continues_from_the_last_checkpoint(train_tiny, atss_one_epoch) -> None:
    first, _ = atss_one_epoch
    work_dir = first.work_dir
    second, tracker = train_tiny("atss", work_dir, max_epochs=2)
    assert second.resumed_from_epoch == 1  # not started over
    assert second.epochs == 2
    assert (work_dir / "epoch_2.pth").is_file()
    steps = [h["step"] for h in tracker.history if "train/loss" in h]
    first_iters = torch.load(work_dir / "epoch_1.pth", map_location="cpu", weights_only=False)[
        "meta"
    ]["iter"]
    assert steps and min(steps) > first_iters  # only epoch 2's iterations ran

    # Asking again for the same number of epochs trains nothing.
    third, tracker = train_tiny("atss", work_dir, max_epochs=2)
    assert third.resumed_from_epoch == 2 and third.epochs == 2
    assert not [h for h in tracker.history if "train/loss" in h]
    assert third.metrics == second.metrics  # the last validation is remembered


def test_missing_coco_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="export_coco"):
        train_detector("atss", "sample", tmp_path / "none.json", None, tmp_path / "work")
