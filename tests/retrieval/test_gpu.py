"""Retrieval on a CUDA device (marked gpu: skipped, saying so, where there is none):
mixed-precision training lowers the loss, and a model embeds the same on GPU and CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clothes_retrieval.retrieval.embed import embed_crops
from clothes_retrieval.retrieval.train import train_retrieval_model

from .conftest import tiny_config


@pytest.mark.gpu
def test_mixed_precision_training_on_cuda_lowers_the_loss(train_crops, tmp_path):
    cfg = tiny_config(
        train={"epochs": 4, "iterations_per_epoch": 3, "amp": True},
        optim={"name": "adamw", "lr": 3e-3},
        data={"augment": {"enabled": False}},
    )
    result = train_retrieval_model(
        cfg, train_crops, None, tmp_path / "run", device="cuda", progress=False
    )
    losses = [r["loss"] for r in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert next(result.model.parameters()).device.type == "cuda"


@pytest.mark.gpu
def test_embeddings_agree_between_cuda_and_cpu(train_crops, tmp_path):
    cfg = tiny_config()
    result = train_retrieval_model(cfg, train_crops, None, tmp_path / "run", progress=False)
    items = [(p, None) for p in train_crops["crop_path"][:16]]
    on_gpu = embed_crops(result.model.to("cuda"), items, device="cuda", progress=False)
    on_cpu = embed_crops(result.model.to("cpu"), items, device="cpu", progress=False)
    cosine = np.sum(on_gpu * on_cpu, axis=1)
    assert cosine.min() > 0.999, cosine
    assert torch.cuda.is_available()
