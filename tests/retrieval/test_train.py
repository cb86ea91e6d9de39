import json

import pandas as pd
import pytest
import torch

from clothes_retrieval.retrieval import train as train_module
from clothes_retrieval.retrieval.train import prepare_training_crops, train_retrieval_model

from .conftest import tiny_config


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_few_steps_lower_the_loss(train_crops, val_crops, tmp_path):
    cfg = tiny_config(
        train={"epochs": 4, "iterations_per_epoch": 3},
        optim={"name": "adamw", "lr": 3e-3},
        data={"augment": {"enabled": False}},
    )
    result = train_retrieval_model(cfg, train_crops, val_crops, tmp_path / "run", progress=False)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0], losses
    assert result.epochs == 4 and result.train_images_per_s > 0
    assert 0 <= result.val_recall_at_1 <= 1 and 0 <= result.val_map_at_r <= 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_recall_at_1"] == result.val_recall_at_1 and len(metrics["history"]) == 4
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["backbone"] == "test_efficientnet"
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


class _Interrupted(Exception):
    pass


def test_resume_equals_uninterrupted(train_crops, tmp_path, monkeypatch):
    cfg = tiny_config(train={"epochs": 2})
    whole = train_retrieval_model(cfg, train_crops, None, tmp_path / "whole", progress=False)

    # the same run killed right after its first checkpoint, then started again
    real_save = train_module._save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise _Interrupted

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_die)
    with pytest.raises(_Interrupted):
        train_retrieval_model(cfg, train_crops, None, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(train_module, "_save_checkpoint", real_save)
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["epoch"] == 1
    torch.manual_seed(12345)  # a fresh process: whatever RNG state, the checkpoint's wins
    resumed = train_retrieval_model(cfg, train_crops, None, tmp_path / "resumed", progress=False)
    a, b = _params(whole.model), _params(resumed.model)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in resumed.history]
    c_a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)["module"][
        "loss.center.centers"
    ]
    c_b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["module"][
        "loss.center.centers"
    ]
    assert torch.equal(c_a, c_b)


def test_checkpoint_of_another_config_is_refused(train_crops, tmp_path):
    train_retrieval_model(tiny_config(), train_crops, None, tmp_path, progress=False)
    with pytest.raises(ValueError, match="different config"):
        train_retrieval_model(
            tiny_config(optim={"lr": 0.01}), train_crops, None, tmp_path, progress=False
        )


def test_training_sources_and_labels(train_crops):
    other = train_crops.assign(
        identity=train_crops["identity"].str.replace("deepfashion2", "street2shop"),
        label=train_crops["label"],
    )
    both = pd.concat([train_crops, other], ignore_index=True)
    cfg = tiny_config(data={"training_sources": ["deepfashion2", "street2shop"]})
    table = prepare_training_crops(cfg, both)
    assert (
        table["label"].nunique() == 2 * train_crops["label"].nunique()
    )  # same label, new identity
    assert len(prepare_training_crops(tiny_config(), both)) == len(train_crops)
    with pytest.raises(ValueError, match="darn"):
        prepare_training_crops(tiny_config(data={"training_sources": ["darn"]}), both)
    with pytest.raises(ValueError, match="missing columns"):
        prepare_training_crops(tiny_config(), train_crops.drop(columns=["identity"]))


def test_source_weights_repeat_a_sources_crops(train_crops):
    other = train_crops.assign(
        identity=train_crops["identity"].str.replace("deepfashion2", "street2shop")
    )
    both = pd.concat([train_crops, other], ignore_index=True)
    sources = ["deepfashion2", "street2shop"]
    cfg = tiny_config(data={"training_sources": sources, "source_weights": {"street2shop": 3}})
    table = prepare_training_crops(cfg, both)
    from_other = table["identity"].str.startswith("street2shop")
    assert int(from_other.sum()) == 3 * len(other)
    assert int((~from_other).sum()) == len(train_crops)
    # a repeated crop keeps its label: the sampler draws it three times as often
    assert table[from_other].groupby("crop_path")["label"].nunique().eq(1).all()
    with pytest.raises(Exception, match="not in training_sources"):
        tiny_config(data={"source_weights": {"darn": 2}})


def test_backbone_lr_mult_scales_only_the_backbone():
    from clothes_retrieval.retrieval.losses import RetrievalLoss
    from clothes_retrieval.retrieval.model import build_model

    cfg = tiny_config(optim={"lr": 0.1, "backbone_lr_mult": 0.25})
    model = build_model(cfg.model, 3)
    module = train_module._TrainingModule(model, RetrievalLoss(cfg.loss, 3, cfg.model.dim))
    optimizer = train_module._build_optimizer(cfg, module)
    backbone = {id(p) for p in model.backbone.parameters()}
    seen = 0
    for group in optimizer.param_groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) == 1  # a group is all backbone or all head/loss
        assert group["lr"] == pytest.approx(0.025 if in_backbone.pop() else 0.1)
        seen += len(group["params"])
    assert seen == sum(1 for p in module.parameters() if p.requires_grad)


def test_training_writes_an_offline_wandb_run_with_losses_metrics_and_artifacts(
    train_crops, val_crops, tmp_path, monkeypatch
):
    from tests.test_tracking import offline_env, read_run

    offline_env(monkeypatch, tmp_path)
    cfg = tiny_config(train={"epochs": 2})
    out = tmp_path / "run"
    result = train_retrieval_model(
        cfg, train_crops, val_crops, out, progress=False, data_version="md5:feedbeef"
    )
    # The result says where the run is, as plain data (it crosses torchrun's processes).
    (folder,) = (out / "wandb").glob("offline-run-*")
    assert result.tracking == {"id": result.tracking["id"], "mode": "offline",
                               "dir": str(folder), "url": None}  # fmt: skip
    assert json.loads((out / "metrics.json").read_text())["tracking"] == result.tracking
    run = read_run(folder)
    assert run.run_id == result.tracking["id"]
    assert run.config["model"]["backbone"] == "test_efficientnet"  # the resolved config
    epochs = [row for row in run.history if "train/images_per_s" in row]  # one row per epoch
    assert [row["train/loss"] for row in epochs] == pytest.approx(
        [r["loss"] for r in result.history]
    )
    assert [row["val/recall_at_1"] for row in epochs] == pytest.approx(
        [r["val_recall_at_1"] for r in result.history]
    )
    assert [row["val/map_at_r"] for row in epochs] == pytest.approx(
        [r["val_map_at_r"] for r in result.history]
    )
    assert run.summary["epochs"] == 2 and run.summary["val_recall_at_1"] == result.val_recall_at_1
    model = run.artifacts["model-tiny"]
    assert model["type"] == "model"
    assert set(model["entries"]) == {"model.pt", "config.json", "metrics.json"}
    assert model["metadata"]["data_version"] == "md5:feedbeef"
    assert model["metadata"]["val_recall_at_1"] == result.val_recall_at_1
    data = run.artifacts["retrieval_crops"]
    assert data["type"] == "dataset" and data["metadata"]["data_version"] == "md5:feedbeef"
