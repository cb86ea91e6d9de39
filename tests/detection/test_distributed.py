"""A detector trained by two gloo processes under torchrun (train_detector_distributed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from clothes_retrieval.detection.train import (
    TrainResult,
    load_checkpoint_file,
    trusted_checkpoints,
)
from clothes_retrieval.launch import train_detector_distributed

from .conftest import _tiny_detector


def test_two_processes_train_one_detector(tiny_coco, tmp_path: Path) -> None:
    """One epoch of ATSS on the tiny set, two CPU processes: each rank trains on its half
    (two iterations of <= 8 images instead of the three of one process), the LR is the
    profile's times two, and only rank 0 wrote our files."""
    detector = _tiny_detector("atss")
    profile = detector.profile("sample")
    work_dir = tmp_path / "work"
    result = train_detector_distributed(
        2,
        detector,
        "sample",
        tiny_coco.train_json,
        tiny_coco.val_json,
        work_dir,
        device="cpu",
        max_epochs=1,
        progress=False,
        cpu_threads=1,
        tracker_mode="disabled",
    )
    assert isinstance(result, TrainResult)
    assert result.world_size == 2 and result.epochs == 1 and result.device == "cpu"
    assert result.lr == pytest.approx(2 * profile.lr)
    assert result.checkpoint == work_dir.resolve() / "latest.pth"
    assert set(result.metrics) >= {"coco/bbox_mAP", "coco/bbox_mAP_50"}  # validated once

    # One writer: our files exist once, no temporary leftovers of a race; mmengine's run
    # (its config dump and log folder, named by rank 0's timestamp) once.
    names = sorted(p.name for p in work_dir.iterdir())
    stamp = re.compile(r"\d{8}_\d{6}(\.py)?")
    assert [n for n in names if not stamp.fullmatch(n)] == [
        "config.py", "detector_config.json", "epoch_1.pth", "last_checkpoint", "latest.pth",
        "launch", "val_metrics.json",
    ]  # fmt: skip
    runs = [n for n in names if stamp.fullmatch(n)]
    assert len(runs) == 2 and runs[0] + ".py" == runs[1]
    assert [p.name for p in (work_dir / runs[0]).glob("*.log")] == [runs[0] + ".log"]
    assert len(json.loads((work_dir / "val_metrics.json").read_text())) == 1
    record = json.loads(result.detector_config_path.read_text())
    assert record["world_size"] == 2 and record["lr"] == pytest.approx(2 * profile.lr)
    from mmengine.config import Config

    cfg = Config.fromfile(str(result.config_path))
    assert cfg.launcher == "pytorch" and cfg.env_cfg.dist_cfg.backend == "gloo"
    assert cfg.auto_scale_lr == {"enable": True, "base_batch_size": profile.batch_size}

    # The checkpoint: 22 training images, 11 per rank -> 2 iterations (one process: 3); its
    # optimizer started from the scaled LR.
    state = load_checkpoint_file(result.checkpoint, map_location="cpu")
    assert state["meta"]["epoch"] == 1 and state["meta"]["iter"] == 2
    initial_lrs = [g["initial_lr"] for g in state["optimizer"]["param_groups"]]
    assert initial_lrs and initial_lrs == pytest.approx([2 * profile.lr] * len(initial_lrs))

    # The weights load into the detector of the written config (no DDP "module." prefix).
    from mmdet.apis import init_detector

    import clothes_retrieval.detection.timm_backbone  # noqa: F401  (registers the backbone)

    assert not any(k.startswith("module.") for k in state["state_dict"])
    with trusted_checkpoints():
        model = init_detector(cfg, str(result.checkpoint), device="cpu", palette="random")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["state_dict"][key]), key
