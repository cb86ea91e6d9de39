"""Tiny training runs: each detector family, learning, resumption, the files beside the
checkpoint."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from clothes_retrieval.detection.inference import IMAGE_COLUMNS, run_detector
from clothes_retrieval.detection.metrics import coco_metrics
from clothes_retrieval.detection.train import CheckpointError, train_detector

# One epoch of the sample profile on the 22 training images is three iterations (batch 8).
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


def test_the_run_gets_the_checkpoint_and_the_data_version(train_tiny, tiny_coco, tmp_path):
    result, tracker = train_tiny(
        "atss", tmp_path / "atss", max_epochs=1, validate=False, data_version="md5:c0ffee"
    )
    model, data = tracker.artifacts
    assert (model["name"], model["type"]) == ("detector-atss-sample", "model")
    assert model["paths"] == [result.checkpoint, result.config_path, result.detector_config_path]
    assert model["metadata"]["epochs"] == 1 and model["metadata"]["data_version"] == "md5:c0ffee"
    # named after the COCO files' folder; the files referenced (by path), never copied
    assert data["name"] == tiny_coco.train_json.resolve().parent.name and data["type"] == "dataset"
    assert data["metadata"] == {
        "data_version": "md5:c0ffee", "sources": [str(tiny_coco.train_json.resolve())]
    }  # fmt: skip
    assert result.tracking is None  # a NullTracker: tracking disabled


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _initial_weights_checkpoint(trained: Path, config_path: Path, out: Path) -> Path:
    """A checkpoint of the model as training starts: built from the run's config and
    initialised (pretrained backbone, head priors), with the trained run's dataset meta."""
    from mmdet.apis import init_detector
    from mmengine.config import Config

    import clothes_retrieval.detection.timm_backbone  # noqa: F401  (registers the backbone)

    model = init_detector(Config.fromfile(str(config_path)), None, device="cpu", palette="random")
    with torch.random.fork_rng():  # the head's random init, reproducibly
        torch.manual_seed(0)
        model.init_weights()
    meta = {"dataset_meta": _load(trained)["meta"]["dataset_meta"]}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, out)
    return out


def test_training_learns(atss_overfit, tiny_coco, tmp_path: Path) -> None:
    """The loss falls, and the trained detector finds the training images' garments far
    better than the same model with its initial weights (a set it can overfit)."""
    result, _ = atss_overfit
    state = _load(result.checkpoint)

    # Every iteration's loss, as mmengine's message hub recorded it (not our tracker hook).
    losses, _ = state["message_hub"]["log_scalars"]["train/loss"].data
    assert len(losses) == state["meta"]["iter"] == 18
    assert np.isfinite(losses).all()
    assert losses[-3:].mean() < 0.8 * losses[:3].mean()  # measured: ~2.6 -> ~1.8

    images = tiny_coco.items[tiny_coco.items["split"] == "train"][list(IMAGE_COLUMNS)]
    images = images.drop_duplicates("image_path")
    initial = _initial_weights_checkpoint(
        result.checkpoint, result.config_path, tmp_path / "initial.pth"
    )
    ap = {}
    for name, checkpoint in (("learnt", result.checkpoint), ("initial", initial)):
        detections = run_detector(
            checkpoint,
            result.config_path,
            images,
            score_thr=0.0,
            device="cpu",
            progress=False,
            cpu_threads=1,
        ).detections
        ap[name] = coco_metrics(detections, tiny_coco.train_json)
    # Measured: AP 0.29 / AP50 0.45 learnt, AP 0.04 / AP50 0.05 initial (seed 0).
    assert ap["learnt"]["AP50"] > 0.25
    assert ap["learnt"]["AP50"] > ap["initial"]["AP50"] + 0.2
    assert ap["learnt"]["AP"] > ap["initial"]["AP"] + 0.1


def test_resume_continues_from_the_last_checkpoint(
    train_tiny, atss_one_epoch, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmengine.runner import Runner

    first, _ = atss_one_epoch
    work_dir = first.work_dir
    saved = _load(work_dir / "epoch_1.pth")

    # What the resumed run holds right after mmengine restored it, before its first step.
    restored: dict = {}
    load_or_resume = Runner.load_or_resume

    def spy(runner: Runner) -> None:
        load_or_resume(runner)
        if not restored:
            restored["model"] = copy.deepcopy(runner.model.state_dict())
            restored["optimizer"] = copy.deepcopy(runner.optim_wrapper.state_dict())
            schedulers = runner.param_schedulers
            restored["schedulers"] = [copy.deepcopy(s.state_dict()) for s in schedulers]

    monkeypatch.setattr(Runner, "load_or_resume", spy)
    second, tracker = train_tiny("atss", work_dir, max_epochs=2)
    monkeypatch.undo()
    assert second.resumed_from_epoch == 1  # not started over
    assert second.epochs == 2
    assert (work_dir / "epoch_2.pth").is_file()
    steps = [h["step"] for h in tracker.history if "train/loss" in h]
    first_iters = saved["meta"]["iter"]
    assert steps and min(steps) > first_iters  # only epoch 2's iterations ran

    # Weights, optimizer state (AdamW moments, step counts, LR) and LR schedulers are the
    # saved ones, not freshly initialised.
    assert restored["model"].keys() == saved["state_dict"].keys()
    for key, value in saved["state_dict"].items():
        assert torch.equal(restored["model"][key], value), key
    optimizer = restored["optimizer"]
    assert optimizer["param_groups"] == saved["optimizer"]["param_groups"]
    assert optimizer["state"].keys() == saved["optimizer"]["state"].keys()
    for index, slots in saved["optimizer"]["state"].items():
        for slot, value in slots.items():
            assert torch.equal(optimizer["state"][index][slot], value), (index, slot)
    assert restored["schedulers"] == saved["param_schedulers"]
    # ... and training went on from them: step counts continue across the two runs.
    last = _load(work_dir / "epoch_2.pth")
    total = last["meta"]["iter"]
    assert total == 2 * first_iters
    assert {float(s["step"]) for s in last["optimizer"]["state"].values()} == {float(total)}
    assert [s["_global_step"] for s in last["param_schedulers"]] == [total, total]

    # Asking again for the same number of epochs trains nothing.
    third, tracker = train_tiny("atss", work_dir, max_epochs=2)
    assert third.resumed_from_epoch == 2 and third.epochs == 2
    assert not [h for h in tracker.history if "train/loss" in h]
    assert third.metrics == second.metrics  # the last validation is remembered


def test_missing_coco_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="export_coco"):
        train_detector("atss", "sample", tmp_path / "none.json", None, tmp_path / "work")


def _truncated_copy(checkpoint: Path, out: Path) -> Path:
    data = checkpoint.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def test_resume_refuses_a_truncated_checkpoint(train_tiny, atss_one_epoch, tmp_path: Path) -> None:
    """A last checkpoint cut short (an interrupted copy) is refused before anything is
    written, naming the file and saying how to go on; no silent restart from scratch."""
    first, _ = atss_one_epoch
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    truncated = _truncated_copy(first.work_dir / "epoch_1.pth", work_dir / "epoch_1.pth")
    (work_dir / "last_checkpoint").write_text(str(truncated))

    with pytest.raises(CheckpointError, match=re.escape(str(truncated))) as info:
        train_tiny("atss", work_dir, max_epochs=2)
    message = str(info.value)
    assert "truncated" in message and "last_checkpoint" in message and "start over" in message
    assert sorted(p.name for p in work_dir.iterdir()) == ["epoch_1.pth", "last_checkpoint"]
